"""pipeline (issue #4): per-stage statistics and the latest job of a generation run

Revision ID: 0003
Revises: 0002
"""
from typing import Sequence, Union

from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401
import db.models  # noqa: F401


revision: str = '0003'
down_revision: Union[str, None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('generation_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stats', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('job_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_generation_runs_job_id_jobs'), 'jobs', ['job_id'], ['id'],
                                    ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('generation_runs', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_generation_runs_job_id_jobs'), type_='foreignkey')
        batch_op.drop_column('job_id')
        batch_op.drop_column('stats')
