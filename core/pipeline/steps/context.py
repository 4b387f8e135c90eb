"""Step 4: the situation leading up to a thought, for a share of the context-less examples chosen
stratified by their labelled emotion (the paper writes contexts for about a third)."""

from __future__ import annotations

from collections import defaultdict

from pydantic import Field
from sqlalchemy import select

from core import labels as label_store
from core.pipeline.steps.base import Item, Step, Strict, sentence_problem
from core.pipeline.steps.labels import run_contextless
from core.pipeline.steps.utterances import run_characters
from db.models import Example, ExampleKind

CONTEXT_CHARS = 700


class Context(Strict):
    context: str = Field(min_length=10, max_length=CONTEXT_CHARS)


def quotas(sizes: dict[str, int], share: float) -> dict[str, int]:
    """Per group, its part of `contexts_for(share, total)` by largest remainder (every group in proportion)."""
    from core.pipeline.plan import contexts_for

    total = contexts_for(share, sum(sizes.values()))
    exact = {group: share * size for group, size in sizes.items()}
    counts = {group: int(value) for group, value in exact.items()}
    for group in sorted(exact, key=lambda g: (counts[g] - exact[g], g))[:total - sum(counts.values())]:
        counts[group] += 1
    return counts


def chosen_parents(ctx, session) -> list[tuple]:
    """The context-less examples that get a context: those that already have one, plus a stratified pick.

    Examples are grouped by their strongest teacher label (the asked emotion when unlabelled); each group
    gives its share, in a seeded order, so extending a run keeps what was chosen before and a repeat
    of the same settings picks the same utterances.
    """
    from core.pipeline.plan import request_seed

    rows = run_contextless(session, ctx.run_id)
    done = set(session.scalars(select(Example.parent_id).where(Example.run_id == ctx.run_id,
                                                               Example.kind == ExampleKind.contextual)))
    scores = label_store.teacher_scores([example.id for example, _, _ in rows])
    groups: dict[str, list[tuple]] = defaultdict(list)
    for row in rows:
        example = row[0]
        mine = scores.get(example.id, {})
        top = max(mine, key=lambda n: (mine[n], n)) if mine else (example.target_emotion or "(unlabelled)")
        groups[top].append(row)
    chosen = []
    for group, count in quotas({g: len(members) for g, members in groups.items()}, ctx.config.context_share).items():
        # Keyed by the text, not the row id, so the same settings pick the same utterances in any database.
        members = sorted(groups[group], key=lambda r: (request_seed(ctx.config.seed, "context-pick", r[0].text), r[0].id))
        already = [r for r in members if r[0].id in done]
        chosen += already + [r for r in members if r[0].id not in done][:max(0, count - len(already))]
    return sorted(chosen, key=lambda r: r[0].id)


class ContextStep(Step):
    name = stage = "context"
    title = "4. Context"
    fields = frozenset({"story_title", "passage", "character", "character_description", "utterance"})
    user_prompt = (
        "Story: {story_title}\n\n{passage}\n\n"
        "{character} ({character_description}) is about to think: \"{utterance}\"\n"
        "Write two or three sentences describing what just happened to {character} in this story, leading "
        "up to that thought. Describe events and actions only; do not name any feeling or emotion.\n"
        'Answer as {{"context": ...}}.')

    def output(self, ctx):
        return Context

    def max_tokens(self, ctx) -> int:
        return 220

    def items(self, ctx, session, state) -> list[Item]:
        windows = {character.id: window for character, _, window in run_characters(session, ctx)}
        return [Item((example, character, story), self.request(ctx, self.render(
            ctx, story_title=story.title, passage=windows.get(character.id, ""), character=character.name,
            character_description=character.description, utterance=example.text),
            "context", windows.get(character.id, ""), character.name, example.text))
            for example, character, story in chosen_parents(ctx, session)]

    def gates(self, ctx, item, parsed) -> list[str]:
        why = sentence_problem(parsed.get("context", ""), ctx.labels, what="context", min_words=6)
        return [why] if why else []

    def planned_calls(self, plan) -> tuple[int, float]:
        size = plan.template_chars.get(self.name, 0) + plan.mean_window + plan.description_chars + plan.utterance_chars
        return round(plan.contexts), plan.contexts * size


STEP = ContextStep()
