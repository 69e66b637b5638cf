"""Schema comes up by itself: a fresh database (SQLite or PostgreSQL) is migrated at start, concurrently too."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from lora_core.db import MIGRATIONS_DIR, make_engine, migrate
from lora_core.settings import Settings
from tests.conftest import fresh_postgres_database

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
        assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == ["0005"]
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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own (not migrated), for a test that migrates step by step."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'steps.db'}"
        return
    with fresh_postgres_database() as url:
        yield url


def _upgrade(engine: sa.Engine, revision: str) -> None:
    """Migrate `engine`'s database to `revision`, to write rows as an older version of the app did."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def test_0004_marks_the_uploads_that_never_had_a_file(fresh_database_url: str) -> None:
    """Rejected or abandoned before purged_at was set for them: in error, never validated. Validated errors, deleted
    datasets and the rest keep theirs."""
    engine = sa.create_engine(fresh_database_url)
    _upgrade(engine, "0003")
    insert = sa.text(
        "INSERT INTO datasets (id, user_id, name, format, status, storage_bucket, storage_path, file_name, file_size,"
        " training_ready, created_at, updated_at, attempts, validated_at, deleted_at) VALUES (:id, 'u', 'n',"
        " 'openai_chat', :status, 'b', :path, 'f', 1, false, :at, :at, 0, :validated, :deleted)"
    )
    at = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    rows = {  # id → (status, validated_at, deleted_at, purged_at expected)
        1: ("error", None, None, True),  # rejected at confirm, or abandoned
        2: ("error", at, None, False),  # validated, with errors: its file is there
        3: ("ready", at, None, False),
        4: ("uploading", None, None, False),
        5: ("error", None, at, False),  # deleted: housekeeping's purge removes what is left
    }
    with engine.begin() as connection:
        for number, (status, validated, deleted, _) in rows.items():
            values = {"id": f"{number:032x}", "status": status, "path": f"p{number}", "at": at}
            connection.execute(insert, {**values, "validated": validated, "deleted": deleted})
    _upgrade(engine, "head")
    with engine.connect() as connection:
        marked = dict(connection.execute(sa.text("SELECT storage_path, purged_at FROM datasets")).all())
    assert {path for path, purged in marked.items() if purged is not None} == {"p1"}
    engine.dispose()


def test_0005_gives_existing_datasets_their_name_key(fresh_database_url: str, tmp_path: Path) -> None:
    """Rows written before the column get the key new ones get (models.name_key), so the search finds them; and the
    notifications keep their dataset (through the app's engine, with SQLite's foreign keys on, a table rebuild would
    have set them to NULL)."""
    engine = make_engine(Settings(_env_file=None, database_url=fresh_database_url, data_dir=tmp_path / "data"))
    _upgrade(engine, "0004")
    insert = sa.text(
        "INSERT INTO datasets (id, user_id, name, format, status, storage_bucket, storage_path, file_name, file_size,"
        " training_ready, created_at, updated_at, attempts) VALUES (:id, 'u', :name, 'openai_chat', 'ready', 'b',"
        " :path, 'f', 1, false, :at, :at, 0)"
    )
    at = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    names = {1: "  Größe Café ", 2: "Cafe\u0301 NAÏVE", 3: "plain"}
    with engine.begin() as connection:
        for number, name in names.items():
            connection.execute(insert, {"id": f"{number:032x}", "name": name, "path": f"p{number}", "at": at})
        connection.execute(
            sa.text(
                "INSERT INTO notifications (id, user_id, dataset_id, kind, title, message, created_at) VALUES"
                " (:id, 'u', :dataset, 'dataset_ready', 't', 'm', :at)"
            ),
            {"id": f"{9:032x}", "dataset": f"{1:032x}", "at": at},
        )
    _upgrade(engine, "head")
    with engine.connect() as connection:
        keys = dict(connection.execute(sa.text("SELECT storage_path, name_key FROM datasets")).all())
        linked = connection.execute(sa.text("SELECT dataset_id FROM notifications")).scalar_one()
    assert keys == {"p1": "grösse café", "p2": "café naïve", "p3": "plain"}
    assert linked is not None
    engine.dispose()
