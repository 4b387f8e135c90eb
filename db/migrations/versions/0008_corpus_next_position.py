"""workers (issue #14): a corpus hands out story positions from a counter, so imports never clash

Revision ID: 0008
Revises: 0007
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import db.models  # noqa: F401


revision: str = '0008'
down_revision: Union[str, None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('corpora', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_position', sa.Integer(), nullable=False, server_default='0'))
    # Existing corpora continue after their highest position.
    op.execute("UPDATE corpora SET next_position = COALESCE("
               "(SELECT MAX(stories.position) + 1 FROM stories WHERE stories.corpus_id = corpora.id), 0)")


def downgrade() -> None:
    with op.batch_alter_table('corpora', schema=None) as batch_op:
        batch_op.drop_column('next_position')
