"""Alembic environment: runs on the connection `lora_core.db.migrate` hands over, or on LORA_DATABASE_URL."""

from alembic import context
from sqlalchemy import engine_from_config, pool
from sqlmodel import SQLModel

from lora_core import models  # noqa: F401  (registers the tables on SQLModel.metadata)
from lora_core.settings import get_settings

config = context.config
target_metadata = SQLModel.metadata


def _configure(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _configure(connection)
else:
    section = config.get_section(config.config_ini_section) or {}
    section["sqlalchemy.url"] = get_settings().effective_database_url
    engine = engine_from_config(section, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as conn:
        _configure(conn)
