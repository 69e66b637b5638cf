"""dataset name_key

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 19:00:00

The list's search and the upload page's same-name check compare names case-folded (models.name_key). SQLite's
LIKE and lower() fold ASCII letters only, so the folded name is stored; existing rows get theirs here, computed by
the same function as new ones.

The column keeps its server default (''): dropping it would make SQLite's batch mode rebuild the table, and with
foreign keys on, dropping the old `datasets` fires notifications' ON DELETE SET NULL, unlinking every notification
from its dataset. Adding a column with a default is a plain ALTER TABLE on both databases.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from lora_core.models import name_key

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name_key', sa.Text(), nullable=False, server_default=''))
    connection = op.get_bind()
    datasets = sa.table('datasets', sa.column('id'), sa.column('name'), sa.column('name_key'))
    rows = connection.execute(sa.select(datasets.c.id, datasets.c.name)).all()
    for dataset_id, name in rows:
        connection.execute(
            datasets.update().where(datasets.c.id == dataset_id).values(name_key=name_key(name))
        )


def downgrade() -> None:
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_column('name_key')
