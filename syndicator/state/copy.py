"""Move a whole state database to another (SQLite to PostgreSQL): ``syndicator state copy``.

Every table is copied row for row (articles, files, subscribers, requests, matches,
messages with their status and Message-ID, feed signatures, the unsubscribe secret in
``meta``), so the service started on the copy mails nothing again. The target must be
empty; a message that was being sent is copied as waiting (the service is stopped while
copying, so it is not being sent).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select, text

from syndicator.errors import StateError
from syndicator.state.db import (
    SCHEMA_META_KEYS,
    State,
    insert_rows,
    instances_table,
    meta_table,
    metadata,
    rate_limits_table,
)

CHUNK = 2000
# What an instance writes while it runs, not the installation's state.
_RUNTIME = {instances_table.name, rate_limits_table.name}


@dataclass(slots=True)
class CopyReport:
    rows: dict[str, int] = field(default_factory=dict)


def _occupied(target: State) -> list[str]:
    """Tables of ``target`` that hold rows (``meta`` counts past the rows describing its
    schema)."""
    found = []
    with target.engine.connect() as conn:
        for table in metadata.sorted_tables:
            if table.name in _RUNTIME:
                continue
            query = select(func.count()).select_from(table)
            if table is meta_table:
                query = query.where(meta_table.c.key.not_in(SCHEMA_META_KEYS))
            if conn.execute(query).scalar():
                found.append(table.name)
    return found


def copy_state(source: State, target: State) -> CopyReport:
    """Copy every row of ``source`` into the empty ``target``, in one transaction."""
    occupied = _occupied(target)
    if occupied:
        raise StateError(
            f"the target database is not empty (rows in {', '.join(occupied)})",
            hint="copy into a new, empty database",
        )
    report = CopyReport()
    with source.engine.connect() as reading, target.transaction() as writing:
        for table in metadata.sorted_tables:
            if table.name in _RUNTIME:
                continue
            count = 0
            rows = reading.execute(select(table)).mappings()
            while batch := rows.fetchmany(CHUNK):
                values = [dict(row) for row in batch]
                if table is meta_table:
                    values = [row for row in values if row["key"] not in SCHEMA_META_KEYS]
                if table.name == "messages":
                    for row in values:
                        if row["status"] == "sending":
                            row["status"] = "pending"
                        row["lease_owner"] = None
                        row["lease_expires_at"] = None
                count += insert_rows(writing, table, values)
            report.rows[table.name] = count
        if writing.dialect.name == "postgresql":
            # Keys given explicitly leave the sequences behind: new rows continue after them.
            for table in metadata.sorted_tables:
                for column in table.primary_key.columns:
                    if column.autoincrement is True:
                        writing.execute(
                            text(
                                f"SELECT setval(pg_get_serial_sequence('{table.name}', "
                                f"'{column.name}'), COALESCE(MAX({column.name}), 0) + 1, false) "
                                f"FROM {table.name}"
                            )
                        )
    return report
