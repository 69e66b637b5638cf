"""Schema comes up by itself: a fresh database (SQLite or PostgreSQL) is migrated at start, concurrently too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from lora_core.db import make_engine, migrate
from lora_core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
TABLES = {"alembic_version", "datasets", "notifications", "api_tokens"}


def test_a_fresh_database_is_migrated_to_head_and_migrating_again_changes_nothing(settings: Settings) -> None:
    engine = make_engine(settings)
    migrate(engine)
    migrate(engine)
    inspector = sa.inspect(engine)
    assert set(inspector.get_table_names()) >= TABLES
    indexes = {index["name"] for index in inspector.get_indexes("datasets")}
    assert {
        "ix_datasets_user_status",
        "ix_datasets_user_created",
        "ix_datasets_status_lease",
        "ix_datasets_deleted",
    } <= indexes
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == ["0003"]
    engine.dispose()


def test_the_database_refuses_an_unknown_status(engine: sa.Engine) -> None:
    """Statuses are checked by the database too, not only by Python."""
    statement = sa.text(
        "INSERT INTO datasets (id, user_id, name, format, status, storage_bucket, storage_path, file_name, file_size,"
        " training_ready, created_at, updated_at, attempts) VALUES (:id, 'u', 'n', 'openai_chat', 'done', 'b', 'p',"
        " 'f', 1, false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 0)"
    )
    try:
        with engine.begin() as connection:
            connection.execute(statement, {"id": "00000000000000000000000000000001"})
    except sa.exc.IntegrityError:
        return
    raise AssertionError("a dataset with status 'done' was accepted")


def test_three_processes_starting_at_once_on_a_new_sqlite_file_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    code = (
        "from lora_core.db import make_engine, migrate; from lora_core.settings import Settings; "
        f"migrate(make_engine(Settings(_env_file=None, database_url={url!r}, data_dir={str(tmp_path)!r})))"
    )
    processes = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE) for _ in range(3)]
    errors = [p.communicate(timeout=60)[1].decode() for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], errors
    engine = sa.create_engine(url)
    assert set(sa.inspect(engine).get_table_names()) >= TABLES
    engine.dispose()


def test_the_migrations_build_exactly_the_tables_the_models_describe(settings: Settings) -> None:
    """A column added to a model without its migration (or the reverse) shows up here, not in production."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    engine = make_engine(settings)
    migrate(engine)
    with engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), SQLModel.metadata
        )
    engine.dispose()
    assert differences == []
