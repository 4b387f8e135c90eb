"""curation (issue #6): group signals (diversity per emotion and per character)

Revision ID: 0004
Revises: 0003
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import db.models


revision: str = '0004'
down_revision: Union[str, None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "group_signals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("group_by", sa.String(length=32), nullable=False),
        sa.Column("group_key", sa.String(length=255), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("computed_by", sa.String(length=255), nullable=False),
        sa.Column("computed_at", db.models.UTC(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_group_signals")),
    )
    op.create_index("ix_group_signals_kind_group", "group_signals", ["kind", "group_by"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_group_signals_kind_group", table_name="group_signals")
    op.drop_table("group_signals")
