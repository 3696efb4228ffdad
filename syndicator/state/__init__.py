"""Durable state: the schema and every SQL statement, behind functions named for what they do.

Takes rows and questions from the stages; gives records, with dialect details kept here alone.
Importing the package loads nothing else: the modules that define tables are imported by
``State.open`` before it creates or checks the schema, and commands that only read
articles from SQLite (``lookup``) need no SQLAlchemy at all.
"""

# The version of the schema this code reads and writes (``meta.schema_version``).
SCHEMA_VERSION = 3

# Keys of ``meta`` read without SQLAlchemy too (``lookup``): the count of changes to
# subscribers (kept by triggers), and the subscribers file as last synced into state.
SUBSCRIBERS_REVISION = "subscribers_revision"
SUBSCRIBERS_FILE_SYNCED = "subscribers_file_synced"
