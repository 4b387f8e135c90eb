"""Step 6: the utterance rewritten so its emotion needs the context; stores the second contextual
variant (rewritten utterance + cleaned context) with how much of the original wording it kept."""

from __future__ import annotations

from core.pipeline.steps.base import Item, Step, sentence_problem
from core.pipeline.steps.clean import REWRITTEN, Kept, measure_contexts, store_variant, word_overlap
from core.pipeline.steps.targeted_utterances import Utterance


class RewriteStep(Step):
    name = stage = "rewrite"
    title = "6. Rewrite for context"
    fields = frozenset({"character", "context", "utterance"})
    user_prompt = (
        "Situation: {context}\n\n"
        "{character} thinks: \"{utterance}\"\n"
        "Rewrite the thought so that the emotion is no longer stated and can only be understood together with "
        "the situation. Keep it short, first person.\n"
        'Answer as {{"utterance": ...}}.')
    produced = ("contextual_added", "flagged_names_emotion")

    def output(self, ctx):
        return Utterance

    def max_tokens(self, ctx) -> int:
        return 100

    def items(self, ctx, session, state) -> list[Item]:
        if REWRITTEN not in ctx.config.variants:
            return []
        items = []
        for clean in state.get("clean", []):
            if clean.kept is None:
                continue
            parent, character, _ = clean.subject.subject
            context = clean.kept.answer.parsed["context"]
            items.append(Item(clean, self.request(ctx, self.render(ctx, character=character.name, context=context,
                                                                   utterance=parent.text),
                                                  "rewrite", context, parent.text)))
        return items

    def gates(self, ctx, item, parsed) -> list[str]:
        why = sentence_problem(parsed.get("utterance", ""), ctx.labels)
        return [why] if why else []

    def prepare(self, ctx, items) -> None:
        """Both variants share the raw and cleaned context: the clean step measured it already."""
        unmeasured = []
        for item in (item for item in items if item.kept is not None):
            known = (item.subject.measures or {}).get("context_similarity")
            if known is None:
                unmeasured.append(item)
            else:
                item.measures = {**(item.measures or {}), "context_similarity": known}
        measure_contexts(unmeasured, lambda item: item.subject.subject, lambda item: item.subject)

    def store(self, ctx, session, items) -> dict[str, int]:
        answered = [item for item in items if item.kept is not None]
        if not answered:
            return {}
        chains = []
        for item in answered:
            clean, context = item.subject, item.subject.subject
            parent, character, _ = context.subject
            text = item.kept.answer.parsed["utterance"]
            chains.append((parent, character, Kept(context), Kept(clean), text, Kept(item),
                           {**(item.measures or {}), "utterance_overlap": word_overlap(parent.text, text),
                            "requests": {"context": context.kept.answer.request_id,
                                         "clean": clean.kept.answer.request_id,
                                         "rewrite": item.kept.answer.request_id}}))
        added, flagged = store_variant(ctx, session, self, chains, REWRITTEN)
        return {"contextual_added": added, "flagged_names_emotion": flagged}

    def planned_calls(self, plan) -> tuple[int, float]:
        if REWRITTEN not in plan.config.variants:
            return 0, 0.0
        size = plan.template_chars.get(self.name, 0) + plan.context_chars + plan.utterance_chars + 20
        return round(plan.contexts), plan.contexts * size


STEP = RewriteStep()
