"""suggestion indexes (issue #13): by example alone, and a partial index on out-of-taxonomy names

A run writes five suggestions per example. The (example_id, agent) index copied the agent string into
every entry, though an example's few rows are filtered by agent after the look-up; the oot_name index
held an entry for every suggestion, though only those outside the taxonomy are ever looked up by name.

Revision ID: 0015
Revises: 0014
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import db.models  # noqa: F401


revision: str = '0015'
down_revision: Union[str, None] = '0014'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

NAMED = sa.text("oot_name IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table('suggestions', schema=None) as batch_op:
        batch_op.drop_index('ix_suggestions_example_agent')
        batch_op.drop_index('ix_suggestions_oot_name')
        batch_op.create_index('ix_suggestions_example_id', ['example_id'], unique=False)
        batch_op.create_index('ix_suggestions_oot_name', ['oot_name'], unique=False,
                              postgresql_where=NAMED, sqlite_where=NAMED)


def downgrade() -> None:
    with op.batch_alter_table('suggestions', schema=None) as batch_op:
        batch_op.drop_index('ix_suggestions_oot_name')
        batch_op.drop_index('ix_suggestions_example_id')
        batch_op.create_index('ix_suggestions_oot_name', ['oot_name'], unique=False)
        batch_op.create_index('ix_suggestions_example_agent', ['example_id', 'agent'], unique=False)
