"""pipeline steps (issue #13): descriptors carry an intensity and a gate reason; templates of the renamed steps

The per-utterance prompt of 'utterances' is now the step 'targeted_utterances' (the balanced-targets
preset), and the taxonomy-listing 'describe' prompt is now 'text_labels': their stored versions move
with them, so every example still names the prompt that made it.

Revision ID: 0014
Revises: 0013
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import db.models  # noqa: F401


revision: str = '0014'
down_revision: Union[str, None] = '0013'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

RENAMED = (("utterances", "targeted_utterances"), ("describe", "text_labels"))


def upgrade() -> None:
    with op.batch_alter_table('descriptors', schema=None) as batch_op:
        batch_op.add_column(sa.Column('intensity', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('rejected_reason', sa.Text(), nullable=True))
    templates = sa.table('prompt_templates', sa.column('stage', sa.String))
    for old, new in RENAMED:
        op.execute(templates.update().where(templates.c.stage == old).values(stage=new))


def downgrade() -> None:
    templates = sa.table('prompt_templates', sa.column('stage', sa.String))
    for old, new in RENAMED:
        op.execute(templates.delete().where(templates.c.stage == old))
        op.execute(templates.update().where(templates.c.stage == new).values(stage=old))
    with op.batch_alter_table('descriptors', schema=None) as batch_op:
        batch_op.drop_column('rejected_reason')
        batch_op.drop_column('intensity')
