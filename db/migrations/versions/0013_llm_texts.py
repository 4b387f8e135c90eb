"""compact LLM requests (issue #13): prompt paragraphs and schemas stored once, in llm_texts

Revision ID: 0013
Revises: 0012
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import db.models  # noqa: F401


revision: str = '0013'
down_revision: Union[str, None] = '0012'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Requests stored before this keep their full messages; core.llm.stored reads both forms.
    op.create_table(
        'llm_texts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('hash', sa.String(length=32), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_llm_texts')),
        sa.UniqueConstraint('hash', name=op.f('uq_llm_texts_hash')),
    )


def downgrade() -> None:
    op.drop_table('llm_texts')
