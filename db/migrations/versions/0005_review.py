"""review (issue #5): an annotator's queue is one index seek

item_assignments repeats its item's campaign_id and position, with an index on
(campaign_id, user_id, status, position), and records when it was submitted.

Revision ID: 0005
Revises: 0004
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import db.models  # noqa: F401


revision: str = '0005'
down_revision: Union[str, None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('item_assignments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('campaign_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('position', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('submitted_at', db.models.UTC(), nullable=True))
    # Rows written before this revision take their item's campaign and position.
    op.execute(
        "UPDATE item_assignments SET "
        "campaign_id = (SELECT campaign_id FROM campaign_items WHERE campaign_items.id = item_assignments.item_id), "
        "position = (SELECT position FROM campaign_items WHERE campaign_items.id = item_assignments.item_id)"
    )
    with op.batch_alter_table('item_assignments', schema=None) as batch_op:
        batch_op.alter_column('campaign_id', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('position', existing_type=sa.Integer(), server_default=None)
        batch_op.create_foreign_key(batch_op.f('fk_item_assignments_campaign_id_campaigns'), 'campaigns',
                                    ['campaign_id'], ['id'], ondelete='CASCADE')
        batch_op.create_index('ix_item_assignments_queue', ['campaign_id', 'user_id', 'status', 'position'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('item_assignments', schema=None) as batch_op:
        batch_op.drop_index('ix_item_assignments_queue')
        batch_op.drop_constraint(batch_op.f('fk_item_assignments_campaign_id_campaigns'), type_='foreignkey')
        batch_op.drop_column('submitted_at')
        batch_op.drop_column('position')
        batch_op.drop_column('campaign_id')
