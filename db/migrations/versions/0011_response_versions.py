"""review answers are never downgraded (issue #14): the history of submitted answers

response_versions keeps each submitted value that a later submission replaced. Answers that an
earlier release turned back into drafts while their assignment stayed submitted (a draft save on
a submitted item) are submitted again: the assignment says the annotator submitted them.

Revision ID: 0011
Revises: 0008
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import db.models  # noqa: F401


revision: str = '0011'
down_revision: Union[str, None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'response_versions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('response_id', sa.Integer(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('value', sa.JSON(), nullable=True),
        sa.Column('seconds_spent', sa.Float(), nullable=False),
        sa.Column('submitted_at', db.models.UTC(), nullable=True),
        sa.Column('replaced_at', db.models.UTC(), nullable=False),
        sa.ForeignKeyConstraint(['response_id'], ['responses.id'],
                                name=op.f('fk_response_versions_response_id_responses'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_response_versions')),
        sa.UniqueConstraint('response_id', 'version', name=op.f('uq_response_versions_response_id')),
    )
    op.create_index(op.f('ix_response_versions_response_id'), 'response_versions', ['response_id'], unique=False)
    op.execute(
        "UPDATE responses SET status = 'submitted' WHERE status = 'draft' AND EXISTS ("
        "SELECT 1 FROM item_assignments a WHERE a.item_id = responses.item_id "
        "AND a.user_id = responses.user_id AND a.status = 'submitted')"
    )


def downgrade() -> None:
    op.drop_index(op.f('ix_response_versions_response_id'), table_name='response_versions')
    op.drop_table('response_versions')
