"""expressiveness in a table of its own (issue #13)

The labels step set examples.expressiveness on every context-less example after inserting it: on
PostgreSQL each such UPDATE leaves a second version of the row and new entries in its eight indexes.
Now the value is one insert into `expressiveness` (keyed by the example). Existing values move there;
contextual examples, which only copied their parent's value, read the parent's.

Revision ID: 0016
Revises: 0015
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import db.models  # noqa: F401


revision: str = '0016'
down_revision: Union[str, None] = '0015'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'expressiveness',
        sa.Column('example_id', sa.Integer(), nullable=False),
        sa.Column('value', sa.Float(), nullable=False),
        sa.Column('llm_request_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['example_id'], ['examples.id'], name=op.f('fk_expressiveness_example_id_examples'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['llm_request_id'], ['llm_requests.id'],
                                name=op.f('fk_expressiveness_llm_request_id_llm_requests'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('example_id', name=op.f('pk_expressiveness')),
    )
    op.execute("INSERT INTO expressiveness (example_id, value, llm_request_id) "
               "SELECT id, expressiveness, NULL FROM examples "
               "WHERE expressiveness IS NOT NULL AND kind <> 'contextual'")
    # Not a batch rebuild on SQLite: dropping the old examples table with foreign keys on would delete
    # every row that references an example (suggestions, responses...). SQLite >= 3.35 drops a column
    # in place.
    op.execute("ALTER TABLE examples DROP COLUMN expressiveness")


def downgrade() -> None:
    op.add_column('examples', sa.Column('expressiveness', sa.Float(), nullable=True))
    op.execute("UPDATE examples SET expressiveness = "
               "(SELECT value FROM expressiveness WHERE expressiveness.example_id = examples.id)")
    op.execute("UPDATE examples SET expressiveness = (SELECT value FROM expressiveness "
               "WHERE expressiveness.example_id = examples.parent_id) WHERE kind = 'contextual'")
    op.drop_table('expressiveness')
