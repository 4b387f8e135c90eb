"""Step 5: the context with every emotion word removed; stores the first contextual variant
(the original utterance + the cleaned context) with how close the cleaned context stays to the raw one."""

from __future__ import annotations

from sqlalchemy import select

from core import labels as label_store
from core import embeddings
from core.curate.labels import suggestion_scores
from core.pipeline.cleaning import EmotionWords
from core.pipeline.steps.base import ENCODER_PRECISION, NEUTRAL, Item, Step, sentence_problem
from core.pipeline.steps.context import Context
from db.models import Example, ExampleKind
from db.session import insert_rows

ORIGINAL, REWRITTEN = "original", "rewritten"  # the two contextual variants (meta["variant"])


def variant_of(meta: dict | None) -> str:
    """A contextual example's variant (those made before both variants existed are the rewritten one)."""
    return (meta or {}).get("variant", REWRITTEN)


def similarity(a: list[str], b: list[str]) -> list[float]:
    """Cosine similarity of each pair, with the bundled sentence encoder, all texts in one pass. A pair
    of identical texts (a cleaning that found nothing to remove) is 1.0 without encoding."""
    pending = list(dict.fromkeys(t for x, y in zip(a, b) if x != y for t in (x, y)))
    vectors = dict(zip(pending, embeddings.embed(pending, precision=ENCODER_PRECISION))) if pending else {}
    return [1.0 if x == y else round(float(vectors[x] @ vectors[y]), 4) for x, y in zip(a, b)]


def measure_contexts(items: list[Item], context_of, clean_of) -> None:
    """Each item's similarity of raw vs cleaned context, in `item.measures` (one encoder pass for all)."""
    raw = [" ".join(context_of(i).kept.answer.parsed["context"].split()) for i in items]
    cleaned = [" ".join(clean_of(i).kept.answer.parsed["context"].split()) for i in items]
    for item, value in zip(items, similarity(raw, cleaned)):
        item.measures = {**(item.measures or {}), "context_similarity": value}


def word_overlap(original: str, rewritten: str) -> float:
    """Unigram F1 between two utterances (how much of the wording the rewrite kept)."""
    a, b = original.casefold().split(), rewritten.casefold().split()
    if not a or not b:
        return 0.0
    common = sum(min(a.count(w), b.count(w)) for w in set(a))
    return round(2 * common / (len(a) + len(b)), 4)


def repeats_context(text: str, context: str) -> bool:
    """A tiny teacher may echo the context (or the story title) as the utterance."""
    plain = text.casefold().removeprefix("situation:").strip()
    return bool(plain) and plain in context.casefold()


def store_variant(ctx, session, step: Step, chains: list[tuple], variant: str) -> tuple[int, int]:
    """Contextual examples of one variant, linked to their parent, whose soft labels they show: (added, flagged).

    `chains`: (parent example, character, raw context answer, clean answer, utterance text, final answer,
    extra meta). Flags say where a word still names the parent's own emotion.
    """
    parents = [c[0].id for c in chains]
    done = {(p, variant_of(meta)) for p, meta in session.execute(
        select(Example.parent_id, Example.meta).where(Example.run_id == ctx.run_id,
                                                      Example.kind == ExampleKind.contextual)).tuples()}
    words = EmotionWords(ctx.label_names, ctx.synonyms)
    scores = suggestion_scores(session, parents)  # what the flags compare with: the parent's labels
    taxonomy = set(ctx.label_names)
    cut = label_store.threshold()
    flagged = 0
    made: list[dict] = []
    for parent, character, raw, clean, text, final, extra in chains:
        if (parent.id, variant) in done:
            continue
        context = " ".join(clean.answer.parsed["context"].split())
        text = " ".join(text.split())
        own = {name for name, score in scores.get(parent.id, {}).items() if name in taxonomy and score >= cut}
        own |= {parent.target_emotion} - {NEUTRAL, None}
        flags, in_context, in_text = [], words.find(context), words.find(text)
        if own & set(in_context):
            flags.append("context_names_emotion")
        if own & set(in_text):
            flags.append("utterance_names_emotion")
        flagged += bool(flags)
        if repeats_context(text, context):
            flags.append("utterance_repeats_context")
        flags += [f"gate: {reason}" for reason in (final.rejected if final else [])]
        flags += [f for f in (parent.meta or {}).get("flags", []) if f.startswith("gate:")]
        # The original utterance is the parent's text, the raw answer the linked LLM request's, the engine,
        # model, sampling and template versions the run's: the row keeps only what is its own.
        made.append(dict(
            kind=ExampleKind.contextual, text=text, context=context,
            raw_context=" ".join(raw.answer.parsed["context"].split()), character_id=character.id,
            passage_id=parent.passage_id, story_id=parent.story_id, run_id=ctx.run_id, stage=step.stage,
            parent_id=parent.id, taxonomy_id=ctx.taxonomy_id, template_id=ctx.templates[step.template_stage].id,
            llm_request_id=(final or clean).answer.request_id,
            target_emotion=parent.target_emotion,
            meta=variant_meta(parent, variant, flags, clean_request(clean, final).sampling.seed,
                              in_context, in_text, extra),
        ))
    # The variants' labels are the parent's, read through it (core.labels.shown_by), not copied.
    insert_rows(session, Example, made)
    return len(made), flagged


def variant_meta(parent, variant: str, flags: list[str], seed, in_context: dict, in_text: dict,
                 extra: dict) -> dict:
    """A contextual example's meta. Empty flags and emotion words are left out (readers default them):
    most rows have none, and a run stores a third of a million of these."""
    meta = {"slot": (parent.meta or {}).get("slot"), "variant": variant,
            "teacher_emotion": (parent.meta or {}).get("teacher_emotion"), "seed": seed, **extra}
    if flags:
        meta["flags"] = flags
    if in_context or in_text:
        meta["emotion_words"] = {"context": in_context, "utterance": in_text}
    return meta


def clean_request(clean, final):
    return (final or clean).request


class Kept:
    """An item's kept answer with its request (what the variant store reads)."""

    def __init__(self, item: Item):
        self.answer, self.request, self.rejected = item.kept.answer, item.request, item.kept.rejected


class CleanStep(Step):
    name = stage = "clean"
    title = "5. Context cleaning"
    fields = frozenset({"context", "label_names"})
    user_prompt = (
        "Text: \"{context}\"\n\n"
        "Rewrite the text, keeping every event, but remove every word that names or describes a feeling or "
        "emotion (such as {label_names}). Keep it natural.\n"
        'Answer as {{"context": ...}}.')
    produced = ("contextual_added", "flagged_names_emotion")

    def output(self, ctx):
        return Context

    def max_tokens(self, ctx) -> int:
        return 220

    def items(self, ctx, session, state) -> list[Item]:
        names = ", ".join(name for name in ctx.label_names if name != NEUTRAL)
        return [Item(previous, self.request(ctx, self.render(ctx, context=previous.kept.answer.parsed["context"],
                                                             label_names=names),
                                            "clean", previous.kept.answer.parsed["context"]))
                for previous in state.get("context", []) if previous.kept is not None]

    def gates(self, ctx, item, parsed) -> list[str]:
        why = sentence_problem(parsed.get("context", ""), ctx.labels, what="context", min_words=6)
        return [why] if why else []

    def prepare(self, ctx, items) -> None:
        measure_contexts([item for item in items if item.kept is not None], lambda item: item.subject, lambda item: item)

    def store(self, ctx, session, items) -> dict[str, int]:
        answered = [item for item in items if item.kept is not None]
        if ORIGINAL not in ctx.config.variants or not answered:
            return {}
        chains = []
        for item in answered:
            parent, character, _ = item.subject.subject
            chains.append((parent, character, Kept(item.subject), Kept(item), parent.text, None,
                           {**(item.measures or {}),
                            "requests": {"context": item.subject.kept.answer.request_id,
                                         "clean": item.kept.answer.request_id}}))
        added, flagged = store_variant(ctx, session, self, chains, ORIGINAL)
        return {"contextual_added": added, "flagged_names_emotion": flagged}

    def planned_calls(self, plan) -> tuple[int, float]:
        size = plan.template_chars.get(self.name, 0) + plan.context_chars + 12 * len(plan.label_lines.splitlines())
        return round(plan.contexts), plan.contexts * size


STEP = CleanStep()
