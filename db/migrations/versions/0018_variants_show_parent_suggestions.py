"""contextual variants show their parent's suggestions instead of copies (issue #13)

Both contextual variants of an utterance carry the labels of their context-less parent. The pipeline
copied the parent's suggestions (about five rows) onto each variant: about 190 bytes per LLM call on
PostgreSQL, and copies that a changed OOT mapping or label had to reach one by one. Readers now join
through `core.labels.shown_by` (a variant's suggestions are its parent's), so the copies go. Only rows
equal to one of the parent's (label or OOT name, score, agent and LLM request: what every version of
the pipeline copied) are deleted; any other row on a variant stays. The OOT dictionary's occurrence
counts are recounted.

The downgrade copies the parent's suggestions back onto every variant that has none.

Revision ID: 0018
Revises: 0017
"""
from typing import Sequence, Union

from alembic import op

revision: str = '0018'
down_revision: Union[str, None] = '0017'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

RECOUNT_OOT = (
    "UPDATE oot_mappings SET occurrences = (SELECT count(*) FROM suggestions s "
    "JOIN examples e ON e.id = s.example_id "
    "WHERE e.taxonomy_id = oot_mappings.taxonomy_id AND s.oot_name = oot_mappings.source_name)"
)


def upgrade() -> None:
    same = "IS NOT DISTINCT FROM" if op.get_bind().dialect.name == "postgresql" else "IS"
    op.execute(
        "DELETE FROM suggestions WHERE id IN ("
        " SELECT s.id FROM suggestions s JOIN examples e ON e.id = s.example_id"
        " WHERE e.parent_id IS NOT NULL AND EXISTS ("
        "  SELECT 1 FROM suggestions p WHERE p.example_id = e.parent_id AND p.agent = s.agent"
        f"  AND p.score = s.score AND p.label_id {same} s.label_id AND p.oot_name {same} s.oot_name"
        f"  AND p.llm_request_id {same} s.llm_request_id))"
    )
    op.execute(RECOUNT_OOT)


def downgrade() -> None:
    op.execute(
        "INSERT INTO suggestions (example_id, label_id, oot_name, score, agent, llm_request_id, created_at)"
        " SELECT e.id, p.label_id, p.oot_name, p.score, p.agent, p.llm_request_id, p.created_at"
        " FROM examples e JOIN suggestions p ON p.example_id = e.parent_id"
        " WHERE NOT EXISTS (SELECT 1 FROM suggestions s WHERE s.example_id = e.id)"
        " ORDER BY e.id, p.id"
    )
    op.execute(RECOUNT_OOT)
