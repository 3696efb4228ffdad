"""Durable state: the schema and every SQL statement, behind functions named for what they do.

Takes rows and questions from the stages; gives records, with dialect details kept here alone.
"""

# Every table must be known before the schema is created on first use.
from syndicator.state import readers as readers
