"""purged_at of uploads without a file

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 15:20:00

Data only. Since session 6, a rejected upload (at confirm) and an abandoned one (housekeeping) record `purged_at`:
their bytes are removed, so the pages offer neither Download nor Revalidate. Earlier ones are exactly the datasets in
`error` that were never validated (`validated_at` is set by every validation, failed or not); they get the same mark,
dated when they became errors, so that they read like the new ones. Deleted ones are left to housekeeping's purge.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        sa.text(
            "UPDATE datasets SET purged_at = updated_at "
            "WHERE status = 'error' AND validated_at IS NULL AND purged_at IS NULL AND deleted_at IS NULL"
        )
    )


def downgrade() -> None:
    # Which marks this set cannot be told from those set since; they only disable buttons, so they stay.
    pass
