"""Persistent state through SQLAlchemy Core: SQLite by default, PostgreSQL for scale-out.

The schema is created on first use and its version recorded in ``meta`` for
later migrations. On SQLite the database runs in WAL mode and every transaction
starts with ``BEGIN IMMEDIATE``, so two processes (a daemon and a CLI command, or
two commands) take turns instead of failing half-way or corrupting anything;
each waits up to ``busy_timeout`` for the other.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    event,
    func,
    inspect,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.types import TypeDecorator

from syndicator.errors import StateError
from syndicator.models import Article
from syndicator.state import SCHEMA_VERSION, SUBSCRIBERS_REVISION

BUSY_TIMEOUT_SECONDS = 30


class AwareDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes, stored in UTC on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the state database")
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

meta_table = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

files_table = Table(
    "files",
    metadata,
    Column("path", Text, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("problems", Text, nullable=False, default=""),
)

articles_table = Table(
    "articles",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("seq", BigInteger, nullable=False, unique=True),
    Column("source", Text, nullable=False, index=True),
    Column("line", Integer, nullable=False),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("format", String(16), nullable=False, default="text"),
    Column("summary", Text, nullable=False, default=""),
    Column("link", Text, nullable=False, default=""),
    Column("author", Text, nullable=False, default=""),
    Column("regions", Text, nullable=False),
    Column("topics", Text, nullable=False),
    Column("front_regions", Text, nullable=True),
    Column("front_topics", Text, nullable=True),
    Column("front_date", AwareDateTime, nullable=True),
    Column("front_updated", AwareDateTime, nullable=True),
    Column("content_hash", String(64), nullable=False),
    Column("classified_with", String(64), nullable=False),
    Column("first_seen", AwareDateTime, nullable=False),
    Column("published", AwareDateTime, nullable=False),
    Column("updated", AwareDateTime, nullable=False),
    Column("removed_at", AwareDateTime, nullable=True, index=True),
    # Hash of the article page last published, so unchanged pages are not rewritten.
    Column("page_signature", String(64), nullable=False, default=""),
)

subscribers_table = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False),
    # Lower-cased address: one subscription per address, whatever its case.
    Column("email_key", String(320), nullable=False, unique=True),
    Column("name", Text, nullable=False, default=""),
    Column("filters", Text, nullable=False),  # JSON: regions, topics, keywords, exclusions
    Column("cadence", String(16), nullable=False),
    Column("hour", Integer, nullable=False),
    Column("weekday", String(3), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("source", String(16), nullable=False),  # file | cli | web
    Column("status", String(16), nullable=False),  # active | suspended | unsubscribed | removed
    Column("added_at", AwareDateTime, nullable=False),
    # Articles with a larger seq were first seen after this subscriber was added.
    Column("added_seq", BigInteger, nullable=False),
    Column("permanent_failures", Integer, nullable=False, default=0),
    Column("next_digest_at", AwareDateTime, nullable=True, index=True),
    Column("unsubscribed_at", AwareDateTime, nullable=True),
    # How a digest's table of contents is grouped: "region" or "topic".
    Column("group_by", String(16), nullable=False, default="region", server_default="region"),
)

# Subscriptions asked for on the web and not yet confirmed (double opt-in). A request
# becomes (or updates) a row of ``subscribers`` only when its confirmation link is used;
# until then it receives nothing but the confirmation mail.
subscription_requests_table = Table(
    "subscription_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False),
    Column("email_key", String(320), nullable=False, index=True),
    Column("settings", Text, nullable=False),  # JSON: the subscriber's fields as asked for
    # Random, signed into the confirmation link: a link dies with the request it belongs to.
    Column("nonce", String(32), nullable=False),
    Column("requested_at", AwareDateTime, nullable=False, index=True),
    Column("confirmed_at", AwareDateTime, nullable=True),
)

# One row per (subscriber, article) ever matched: the primary key is the promise that
# nobody gets the same article twice.
matches_table = Table(
    "matches",
    metadata,
    Column("subscriber_id", Integer, primary_key=True),
    Column("article_id", String(128), primary_key=True),
    Column("matched_at", AwareDateTime, nullable=False),
    Column("message", Integer, nullable=True, index=True),  # messages.id that carries it
)

messages_table = Table(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # 0 for a confirmation mail, which goes to an address that is no subscriber yet. Looked
    # up through the first column of messages_one_digest_per_slot.
    Column("subscriber_id", Integer, nullable=False),
    Column("kind", String(16), nullable=False),  # immediate | daily | weekly | confirm | notice
    Column("message_id", String(255), nullable=False, unique=True),
    Column("recipient", String(320), nullable=False),
    Column("body", LargeBinary, nullable=False),
    # pending -> sending -> sent | retry (at next_attempt_at) | failed; the messages not
    # yet sent are found through messages_unsent.
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", AwareDateTime, nullable=True),
    Column("created_at", AwareDateTime, nullable=False),
    Column("sent_at", AwareDateTime, nullable=True),
    Column("last_error", Text, nullable=False, default=""),
    # While ``sending``: the instance that claimed the message and until when its claim
    # holds; past that, any live instance may claim it again.
    Column("lease_owner", String(255), nullable=True),
    Column("lease_expires_at", AwareDateTime, nullable=True),
    # A digest's due time: one digest per subscriber and due time, whoever queues it
    # (NULL for every other kind of message).
    Column("digest_slot", AwareDateTime, nullable=True),
    Index("messages_one_digest_per_slot", "subscriber_id", "digest_slot", unique=True),
)

# The statuses of a message not sent yet (nor given up), and the condition that a message
# has one of them, with the statuses written into the SQL (not bound as parameters): a
# statement that filters on it can use messages_unsent, a partial index of those messages
# alone, on both databases (SQLite uses a partial index only for a query whose WHERE
# repeats its condition; PostgreSQL cannot prove a bound parameter satisfies it). Every
# statement that looks for messages by status includes it, unless it looks for sent ones.
UNSENT_STATUSES = ("pending", "retry", "sending")
unsent_messages = messages_table.c.status.in_(
    [literal_column(f"'{status}'") for status in UNSENT_STATUSES]
)
# Only the messages still to send are indexed by status. The sent ones, soon nearly all of
# an outbox that grows by a message per subscriber and digest, are never read past by a
# claim; and as every update of a row writes an entry in each index that holds it, a claim
# writes four (there were six) and a message marked sent three: it leaves this index.
Index(
    "messages_unsent",
    messages_table.c.id,
    postgresql_where=unsent_messages,
    sqlite_where=unsent_messages,
)

# The instances sharing this database, each with its heartbeat (see state.coordination).
instances_table = Table(
    "instances",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("roles", String(64), nullable=False),
    Column("started_at", AwareDateTime, nullable=False),
    Column("heartbeat_at", AwareDateTime, nullable=False),
    # Set while this instance holds the cycle.
    Column("cycle_since", AwareDateTime, nullable=True),
)

# Token buckets of the web's rate limits, shared by every instance (state.ratelimits).
rate_limits_table = Table(
    "rate_limits",
    metadata,
    Column("key", String(400), primary_key=True),  # purpose:client or purpose:address
    Column("tokens", Float, nullable=False),
    Column("at", Float, nullable=False, index=True),  # Unix seconds of the last take
)

# Columns added to tables after their first release: (table, column), added by migration.
_ADDED_COLUMNS = (
    ("messages", "lease_owner"),
    ("messages", "lease_expires_at"),
    ("messages", "digest_slot"),
    ("subscribers", "group_by"),
)
# Indexes of earlier schemas that are no longer kept, dropped by migration.
_DROPPED_INDEXES = ("ix_messages_status", "ix_messages_lease_owner", "ix_messages_subscriber_id")
SCHEMA_LOCK = "schema"


def advisory_key(name: str) -> int:
    """The 64-bit key of the PostgreSQL advisory lock ``name`` (the same everywhere)."""
    digest = hashlib.sha256(f"syndicator:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# What each published feed file was built from, so unchanged channels are not rebuilt.
feeds_table = Table(
    "feeds",
    metadata,
    Column("path", Text, primary_key=True),
    Column("signature", String(64), nullable=False),
)


def inserted_id(result: CursorResult[Any]) -> int:
    """The primary key of the row an INSERT just wrote."""
    key = result.inserted_primary_key
    if key is None:  # pragma: no cover - every table here has an integer key
        raise StateError("the database returned no key for a new row")
    return int(key[0])


def join_slugs(slugs: Iterable[str]) -> str:
    return " ".join(slugs)


def split_slugs(text: str | None) -> tuple[str, ...]:
    return tuple(text.split()) if text else ()


def article_from_row(row: Any) -> Article:
    return Article(
        id=row.id,
        title=row.title,
        body=row.body,
        summary=row.summary,
        link=row.link,
        author=row.author,
        source=row.source,
        line=row.line,
        regions=split_slugs(row.regions),
        topics=split_slugs(row.topics),
        published=row.published,
        updated=row.updated,
        first_seen=row.first_seen,
        content_hash=row.content_hash,
        seq=row.seq,
        format=row.format,
    )


def _upsert(dialect: str, table: Table, values: dict[str, Any]) -> Any:
    keys = [column.name for column in table.primary_key.columns]
    if dialect == "sqlite":
        return table.insert().values(values).prefix_with("OR REPLACE")
    if dialect == "postgresql":
        # Imported here: loading the PostgreSQL dialect costs every SQLite command time.
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert  # noqa: PLC0415

        statement = postgresql_insert(table).values(values)
        return statement.on_conflict_do_update(
            index_elements=keys,
            set_={name: statement.excluded[name] for name in values if name not in keys},
        )
    raise NotImplementedError(f"no upsert for the {dialect} database")


def insert_rows(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    skip_existing: bool = False,
    replace_existing: bool = False,
) -> int:
    """``INSERT`` many rows with one statement compiled once and the driver's executemany;
    returns how many were inserted.

    The same as ``conn.execute(table.insert(), rows)``, without building and processing
    a parameter set per row in Python (several times faster for large batches). Every
    row must have the same keys; values are converted by each column's type as usual.
    With ``skip_existing``, rows whose primary key is already taken are left out; with
    ``replace_existing``, they overwrite the row holding it (an upsert: safe against a
    concurrent writer of the same key, unlike a delete followed by an insert).
    """
    if not rows:
        return 0
    dialect = conn.dialect
    # Columns left out get their scalar Python-side default, as Core would give them.
    defaults = {
        column.name: column.default.arg  # type: ignore[attr-defined]
        for column in table.c
        if column.name not in rows[0] and column.default is not None and column.default.is_scalar
    }
    if defaults:
        rows = [{**defaults, **row} for row in rows]
    names = list(rows[0])
    values: dict[str, Any] = {name: bindparam(name) for name in names}
    statement: Any = table.insert().values(values)
    if replace_existing:
        statement = _upsert(dialect.name, table, values)
    elif skip_existing and dialect.name == "sqlite":
        statement = statement.prefix_with("OR IGNORE")
    elif skip_existing and dialect.name == "postgresql":
        # Imported here: loading the PostgreSQL dialect costs every SQLite command time.
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert  # noqa: PLC0415

        statement = postgresql_insert(table).values(values).on_conflict_do_nothing()
    elif skip_existing:
        keys = [column.name for column in table.primary_key.columns]
        taken = {tuple(row) for row in conn.execute(select(*table.primary_key.columns))}
        rows = [row for row in rows if tuple(row[key] for key in keys) not in taken]
        if not rows:
            return 0
    compiled = statement.compile(dialect=dialect)
    order = list(compiled.positiontup or []) if compiled.positional else names
    # Only the columns whose type converts values (dates, here) are touched one by one.
    conversions = [
        (position, processor)
        for position, name in enumerate(order)
        if (processor := table.c[name].type.bind_processor(dialect)) is not None
    ]
    fetch = itemgetter(*order)
    parameters: list[Any] = []
    for row in rows:
        fields = list(fetch(row)) if len(order) > 1 else [row[order[0]]]
        for position, processor in conversions:
            fields[position] = processor(fields[position])
        parameters.append(
            tuple(fields) if compiled.positional else dict(zip(order, fields, strict=True))
        )
    result = conn.exec_driver_sql(str(compiled), parameters)
    return len(rows) if result.rowcount < 0 else int(result.rowcount)


def get_meta(conn: Connection, key: str) -> str | None:
    """The value stored under ``key`` in ``meta``, if any."""
    value = conn.execute(select(meta_table.c.value).where(meta_table.c.key == key)).scalar()
    return None if value is None else str(value)


def set_meta(conn: Connection, key: str, value: str) -> None:
    updated = conn.execute(
        update(meta_table).where(meta_table.c.key == key).values(value=value)
    ).rowcount
    if not updated:
        conn.execute(meta_table.insert().values(key=key, value=value))


def meta_once(conn: Connection, key: str, value: str) -> str:
    """The value under ``key``, storing ``value`` there first if none is: instances and
    requests racing to create it all end up with the one that was stored first."""
    insert_rows(conn, meta_table, [{"key": key, "value": value}], skip_existing=True)
    return get_meta(conn, key) or value


_ARTICLES_REVISION = "articles_revision"
_SUBSCRIBERS_REVISION = SUBSCRIBERS_REVISION
# On SQLite, triggers count every change to who is subscribed and to what, whichever
# code or process makes it, so a matching index can be kept while the count stands.
_SUBSCRIBER_TRIGGERS = tuple(
    f"CREATE TRIGGER IF NOT EXISTS subscribers_revision_{name} AFTER {event} ON subscribers "
    "BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 "
    f"WHERE key = '{_SUBSCRIBERS_REVISION}'; END"
    for name, event in (
        ("insert", "INSERT"),
        ("delete", "DELETE"),
        # The cadence too: feed-only subscribers are left out of the matching index.
        ("update_cadence", "UPDATE OF filters, status, added_seq, id, cadence"),
    )
)
# Replaced by the trigger above, which also counts changes of cadence.
_OLD_SUBSCRIBER_TRIGGERS = ("DROP TRIGGER IF EXISTS subscribers_revision_update",)
# On PostgreSQL, the same changes are counted once per transaction, as it commits: a
# deferred trigger takes the revision row only then, so writers never hold it while they
# work (nor wait for it holding subscribers' rows), and counts after the row's first use.
_POSTGRESQL_SUBSCRIBER_COUNT = f"""
CREATE OR REPLACE FUNCTION syndicator_count_subscriber_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('syndicator.subscribers_counted', true) = 'on' THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('syndicator.subscribers_counted', 'on', true);
    INSERT INTO meta (key, value) VALUES ('{_SUBSCRIBERS_REVISION}', '1')
    ON CONFLICT (key) DO UPDATE SET value = (CAST(meta.value AS BIGINT) + 1)::text;
    RETURN NULL;
END
$$
"""
_POSTGRESQL_SUBSCRIBER_TRIGGER = """
CREATE CONSTRAINT TRIGGER subscribers_revision
AFTER INSERT OR DELETE OR UPDATE OF filters, status, added_seq, id, cadence ON subscribers
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
EXECUTE FUNCTION syndicator_count_subscriber_change()
"""


# What the schema of this code is (see State._create_schema), stored in ``meta`` once a
# database was brought up to date for it.
_SCHEMA_SIGNATURE = "schema_signature"
# The rows of ``meta`` that describe the database's schema rather than what it holds.
SCHEMA_META_KEYS = frozenset({"schema_version", _SCHEMA_SIGNATURE})


def _schema_signature() -> str:
    """A digest of every table, column, constraint, index and trigger this code expects."""
    parts = [str(SCHEMA_VERSION), repr(_ADDED_COLUMNS), repr(_DROPPED_INDEXES)]
    parts += [*_OLD_SUBSCRIBER_TRIGGERS, *_SUBSCRIBER_TRIGGERS]
    for table in sorted(metadata.tables.values(), key=lambda table: table.name):
        parts.append(repr(table))
        parts += sorted(repr(constraint) for constraint in table.constraints)
        parts += sorted(
            f"{index.name} unique={index.unique} {[column.name for column in index.columns]}"
            for index in table.indexes
        )
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def subscribers_revision(conn: Connection) -> str | None:
    """A token that changes whenever subscribers or their filters change (committed, by
    any process); None where changes are not counted (databases other than SQLite and
    PostgreSQL)."""
    if conn.dialect.name not in {"sqlite", "postgresql"}:
        return None
    value = conn.execute(
        select(meta_table.c.value).where(meta_table.c.key == _SUBSCRIBERS_REVISION)
    ).scalar()
    if value is None:
        # PostgreSQL's count starts with the first change (SQLite's when state is created).
        return "0" if conn.dialect.name == "postgresql" else None
    return str(value)


class State:
    """A handle on the state database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Who this process is among the instances sharing the database (see
        # state.coordination); the service sets it from ``service.instance_id``.
        self.instance_id = f"{socket.gethostname()}:{os.getpid()}"
        # The last change of articles this handle made: (revision before, revision after,
        # the ids changed), so a publisher in this process can apply just that change.
        self.article_changes: tuple[str, str, frozenset[str]] | None = None

    @classmethod
    def open(cls, url: str) -> State:
        """Open (and on first use create) the database at ``url``."""
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            path = Path(url.removeprefix("sqlite:///").partition("?")[0])
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StateError(
                    f"cannot create the state directory {path.parent}: {exc.strerror}",
                    hint="check state.url",
                ) from exc
        try:
            engine = create_engine(url)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise StateError(f"cannot use state database {url!r}: {exc}") from exc
        if engine.dialect.name == "sqlite":
            _configure_sqlite(engine)
        elif engine.dialect.name == "postgresql":
            _configure_postgresql(engine)
        state = cls(engine)
        try:
            state._create_schema()
        except BaseException:
            # A database refused (newer schema, unreachable) leaves no connection open.
            engine.dispose()
            raise
        return state

    def close(self) -> None:
        self.engine.dispose()

    def _create_schema(self) -> None:
        # Every table must be known first: those of the reader-facing feeds and of
        # deliverability live in their own modules, and importing them registers them.
        from syndicator.state import bounces, readers  # noqa: F401, PLC0415

        # A database this schema was last brought up to date for needs nothing: one read,
        # and no write lock, where checking every table, column, index and trigger takes
        # a write transaction and a query or two each.
        signature = _schema_signature()
        with self.transaction(write=False) as conn:
            if conn.dialect.has_table(conn, meta_table.name):
                rows = conn.execute(
                    select(meta_table.c.key, meta_table.c.value).where(
                        meta_table.c.key.in_(SCHEMA_META_KEYS)
                    )
                )
                found = dict(rows.all())
                expected = {"schema_version": str(SCHEMA_VERSION), _SCHEMA_SIGNATURE: signature}
                if found == expected:
                    return
        with self.transaction() as conn:
            if conn.dialect.name == "postgresql":
                # Instances started together on an empty database take turns here: the
                # first creates the tables, the others then find them.
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_key(SCHEMA_LOCK)}
                )
            metadata.create_all(conn)
            _add_missing_columns(conn)
            for name in _DROPPED_INDEXES:
                conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
            # Indexes added since a table was first created (create_all skips those).
            for table in metadata.sorted_tables:
                for index in table.indexes:
                    index.create(conn, checkfirst=True)
            if conn.dialect.name == "sqlite":
                if self.get_meta(conn, _SUBSCRIBERS_REVISION) is None:
                    self.set_meta(conn, _SUBSCRIBERS_REVISION, "0")
                for trigger in (*_OLD_SUBSCRIBER_TRIGGERS, *_SUBSCRIBER_TRIGGERS):
                    conn.exec_driver_sql(trigger)
            elif conn.dialect.name == "postgresql":
                conn.exec_driver_sql(_POSTGRESQL_SUBSCRIBER_COUNT)
                counted = conn.exec_driver_sql(
                    "SELECT 1 FROM pg_trigger WHERE tgname = 'subscribers_revision' "
                    "AND tgrelid = 'subscribers'::regclass"
                ).first()
                if counted is None:
                    conn.exec_driver_sql(_POSTGRESQL_SUBSCRIBER_TRIGGER)
            version = conn.execute(
                select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).scalar()
            if version is None:
                conn.execute(
                    meta_table.insert().values(key="schema_version", value=str(SCHEMA_VERSION))
                )
            elif int(version) < SCHEMA_VERSION:
                self.set_meta(conn, "schema_version", str(SCHEMA_VERSION))
            elif int(version) > SCHEMA_VERSION:
                raise StateError(
                    f"the state database has schema version {version}, newer than this "
                    f"syndicator understands ({SCHEMA_VERSION})",
                    hint="upgrade syndicator",
                )
            self.set_meta(conn, _SCHEMA_SIGNATURE, signature)

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` on SQLite), or with ``write=False``
        one that only reads (it waits for no writer)."""
        with _state_errors(), self.engine.connect() as conn:
            if write:
                conn.execution_options(syndicator_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def single_statement(self) -> Iterator[Connection]:
        """A connection for one write statement that is a transaction of its own. On
        PostgreSQL it runs in autocommit, so the statement is the one round trip (no
        ``BEGIN`` and ``COMMIT`` of their own); elsewhere it is :meth:`transaction`."""
        if self.engine.dialect.name != "postgresql":
            with self.transaction() as conn:
                yield conn
            return
        with _state_errors(), self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    def held(self, *, index_order: bool = False) -> HeldConnection:
        """One connection kept for many short transactions in a row (see
        :class:`HeldConnection`); close it when done."""
        return HeldConnection(self, index_order=index_order)

    def insert_ignoring_conflict(self, conn: Connection, table: Table, row: dict[str, Any]) -> bool:
        """Insert ``row`` unless its key is taken (by a concurrent writer too); whether it was
        inserted."""
        return insert_rows(conn, table, [row], skip_existing=True) == 1

    # --- meta ----------------------------------------------------------------------------

    def get_meta(self, conn: Connection, key: str) -> str | None:
        return get_meta(conn, key)

    def set_meta(self, conn: Connection, key: str, value: str) -> None:
        set_meta(conn, key, value)

    def meta_once(self, conn: Connection, key: str, value: str) -> str:
        return meta_once(conn, key, value)

    # --- articles revision -------------------------------------------------------------

    def articles_revision(self, conn: Connection) -> str:
        """A token that changes with every write to articles, by any process."""
        return self.get_meta(conn, _ARTICLES_REVISION) or ""

    def record_article_changes(self, conn: Connection, ids: Iterable[str] | None) -> None:
        """Note, in the transaction that changes them, that articles ``ids`` changed
        (None: too many to name; publishers then read every article again)."""
        before = self.articles_revision(conn)
        number = int(before.partition(":")[0] or 0) + 1
        after = f"{number}:{secrets.token_hex(6)}"
        self.set_meta(conn, _ARTICLES_REVISION, after)
        self.article_changes = None if ids is None else (before, after, frozenset(ids))

    # --- files ---------------------------------------------------------------------------

    def files(self, conn: Connection) -> dict[str, tuple[int, int]]:
        """Every store file last read: path -> (size, mtime_ns).

        Read straight from the driver: a large store has a row per file, and this
        runs at every cycle.
        """
        query = select(files_table.c.path, files_table.c.size, files_table.c.mtime_ns)
        compiled = query.compile(dialect=conn.dialect)
        rows = conn.exec_driver_sql(str(compiled)).fetchall()
        return {path: (size, mtime_ns) for path, size, mtime_ns in rows}

    # --- articles ------------------------------------------------------------------------

    def next_seq(self, conn: Connection) -> int:
        current = conn.execute(select(func.max(articles_table.c.seq))).scalar()
        return int(current or 0) + 1

    def articles(
        self,
        *,
        region: str | None = None,
        topic: str | None = None,
        include_removed: bool = False,
    ) -> list[Article]:
        """Articles newest first, optionally those of one region or topic."""
        query = select(articles_table)
        if not include_removed:
            query = query.where(articles_table.c.removed_at.is_(None))
        query = query.order_by(articles_table.c.published.desc(), articles_table.c.seq.asc())
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        found = [article_from_row(row) for row in rows]
        if region:
            found = [article for article in found if region in article.regions]
        if topic:
            found = [article for article in found if topic in article.topics]
        return found

    def find_articles(self, needle: str) -> Sequence[Article]:
        """Articles whose id is ``needle``, else whose title contains it (case-insensitive)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(articles_table).where(articles_table.c.id == needle)).first()
            if row is not None:
                return [article_from_row(row)]
            pattern = f"%{needle.lower()}%"
            rows = conn.execute(
                select(articles_table)
                .where(func.lower(articles_table.c.title).like(pattern))
                .order_by(
                    articles_table.c.removed_at.is_not(None), articles_table.c.published.desc()
                )
            ).all()
        return [article_from_row(row) for row in rows]

    def integrity_ok(self) -> bool:
        if self.engine.dialect.name != "sqlite":
            return True
        with self.engine.connect() as conn:
            return conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"


class HeldConnection:
    """One connection kept for a run of short write transactions, such as delivery's
    claims and group commits, instead of one taken from the pool for each: its
    :meth:`transaction` and :meth:`single_statement` are those of :class:`State`, one at a
    time (a lock keeps threads in turn). A database error closes it; the next use opens
    another.

    With ``index_order``, PostgreSQL reads rows through an index in its order or by key,
    never with a bitmap scan, which first reads every row its condition matches. That is
    for statements that take a few rows by key or the first few in index order (a claim
    of the next messages stops at its limit): with statistics that do not yet know of the
    digests just queued for every subscriber, the planner took a bitmap scan and sorted
    them all for each claim (150 ms a claim at 200,000 messages waiting, 16 ms in order).
    The setting is the connection's own, reset before it goes back to the pool.
    """

    def __init__(self, state: State, *, index_order: bool = False) -> None:
        self._state = state
        self._postgresql = state.engine.dialect.name == "postgresql"
        self._index_order = index_order and self._postgresql
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    def _open(self, *, autocommit: bool) -> Connection:
        conn = self._conn
        if conn is None:
            conn = self._state.engine.connect()
            if autocommit:
                conn.execution_options(isolation_level="AUTOCOMMIT")
            else:
                conn.execution_options(syndicator_write=True)
            self._conn = conn
            if self._index_order:
                conn.exec_driver_sql("SET enable_bitmapscan = off")
        return conn

    @contextmanager
    def single_statement(self) -> Iterator[Connection]:
        """As :meth:`State.single_statement`: on PostgreSQL the kept connection runs in
        autocommit, so a statement is its own transaction and one round trip."""
        if not self._postgresql:
            with self.transaction() as conn:
                yield conn
            return
        with self._lock, _state_errors():
            try:
                yield self._open(autocommit=True)
            except BaseException:
                self._discard(broken=True)
                raise

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """As :meth:`State.transaction`. On PostgreSQL, where the kept connection runs in
        autocommit, a transaction of several statements takes one from the pool."""
        if self._postgresql:
            with self._state.transaction() as conn:
                yield conn
            return
        with self._lock, _state_errors():
            try:
                conn = self._open(autocommit=False)
                with conn.begin():
                    yield conn
            except BaseException:
                self._discard(broken=True)
                raise

    def close(self) -> None:
        """Give the connection back (after a use under way in another thread ends)."""
        with self._lock, _state_errors():
            self._discard(broken=False)

    def _discard(self, *, broken: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if self._index_order and broken:
                conn.invalidate()  # never back to the pool with the setting
            elif self._index_order:
                try:
                    conn.exec_driver_sql("RESET enable_bitmapscan")
                except DBAPIError:
                    conn.invalidate()
                    raise
        finally:
            conn.close()


@contextmanager
def _state_errors() -> Iterator[None]:
    """Database errors as :class:`StateError`, with what to do about them."""
    try:
        yield
    except IntegrityError as exc:
        # Another instance wrote the same row first: nothing was changed here.
        raise StateError(
            f"state database conflict: {_first_line(exc.orig)}",
            hint="another instance changed the same rows; the next attempt sees them",
        ) from exc
    except DBAPIError as exc:
        raise StateError(
            f"state database error: {_first_line(exc.orig)}",
            hint="another process may hold it locked; try again",
        ) from exc


def _first_line(error: BaseException | None) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else repr(error)


def _add_missing_columns(conn: Connection) -> None:
    """Add the columns of ``_ADDED_COLUMNS`` to tables created before them."""
    inspector = inspect(conn)
    for table_name, column_name in _ADDED_COLUMNS:
        present = {column["name"] for column in inspector.get_columns(table_name)}
        if column_name in present:
            continue
        column = metadata.tables[table_name].c[column_name]
        kind = column.type.compile(dialect=conn.dialect)
        # A column with a server default is filled in for the rows already there.
        default = column.server_default
        fill = ""
        if default is not None:
            value = str(default.arg)  # type: ignore[attr-defined]
            fill = " NOT NULL DEFAULT '" + value.replace("'", "''") + "'"
        conn.exec_driver_sql(f"ALTER TABLE {table_name} ADD COLUMN {column_name} {kind}{fill}")


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # As SQLite's busy timeout: a statement waiting for a lock held by another session
        # (a hung client's open transaction, an operator's LOCK TABLE) gives up after this
        # long with one clear error, instead of waiting for ever while holding the cycle.
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET lock_timeout = {BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.close()
        dbapi_connection.commit()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin() issue our own BEGIN (see below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front, so two writers queue instead of one failing
        # half-way; readers see a consistent snapshot and never block a writer (WAL).
        write = conn.get_execution_options().get("syndicator_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
