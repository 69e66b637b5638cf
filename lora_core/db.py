"""Engine, sessions and schema migrations. The schema is Alembic's: `migrate` brings any database to head at start."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

from lora_core.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant works: it only has to be the same in every process that migrates one PostgreSQL database.
_PG_MIGRATION_LOCK_ID = 0x10A4D5E7


def make_engine(settings: Settings) -> Engine:
    """An engine for the configured database. SQLite gets WAL and a busy timeout so several processes can share it."""
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def migrate(engine: Engine) -> None:
    """Apply every pending migration. Safe when several processes start at once: they take turns."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine.dialect.name == "sqlite":
        with _sqlite_migration_lock(engine), engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        return
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_MIGRATION_LOCK_ID})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextmanager
def _sqlite_migration_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    lock_path = Path(database).with_suffix(".migrate.lock")
    with lock_path.open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error, so no half-written record survives."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


# -- what a database error means ---------------------------------------------------------------------------------


def _sqlstate(error: sa.exc.SQLAlchemyError) -> str | None:
    """The SQLSTATE the server answered with (PostgreSQL), None when there is none (no answer, SQLite)."""
    return getattr(getattr(error, "orig", None), "sqlstate", None)


def database_unavailable(error: sa.exc.DBAPIError) -> bool:
    """Whether the database failed for a while (unreachable, shutting down, out of connections, SQLite busy or
    locked), which a retry may get past: the API's 503. A missing table, a refused value or a file that cannot be
    opened will not go away by waiting: those stay 500s, logged as errors."""
    if isinstance(error, sa.exc.InterfaceError) or error.connection_invalidated:
        return True
    if not isinstance(error, sa.exc.OperationalError):
        return False
    sqlite_code = getattr(error.orig, "sqlite_errorcode", None)
    if sqlite_code is not None:
        return sqlite_code & 0xFF in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (extended codes keep them in the low byte)
    state = _sqlstate(error)
    # No SQLSTATE: the server never answered (refused, timed out). Classes 08 connection, 53 resources, 57 shutdown.
    return state is None or state[:2] in ("08", "53", "57")


def value_refused(error: sa.exc.SQLAlchemyError) -> bool:
    """Whether the database refused a value itself (a data exception, a size over its limits), not the connection:
    writing the same value again would fail again (the sweep then stores its result without the report's lists)."""
    if isinstance(error, sa.exc.DataError):
        return True
    return (_sqlstate(error) or "")[:2] in ("22", "54")  # SQLSTATE classes: data exception, program limit exceeded
