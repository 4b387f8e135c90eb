"""Diversity: groups of utterances of one character with one emotion, and of one emotion across
characters (each utterance from another character), rated 1-5, with the repeats marked.

Beside the human ratings, `character_similarity` measures what the paper measured automatically:
per emotion, the mean cosine similarity of embeddings between utterances of the same character
(within) and of different characters (across); the paper: neutral 0.30 within vs 0.16 across. The
worker computes it (job `review_similarity`) into `group_signals`; the Dashboard shows it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

import numpy as np
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from core import jobs
from core.auth import Actor, require_admin, require_page
from core.review.questions import CHOICES_FROM_GROUP, RATING_VALUES, QuestionSpec
from core.review.selection import CHUNK, Selection, select_example_ids, top_labels
from core.review.tasks.base import AnsweredItem, Figure, ReviewTask, Shown, ShownExample, TaskResults
from db.models import Example, GroupSignal
from db.session import read_session, write_session

ANCHORS = {
    "1": "Near copies of each other.",
    "2": "Same wording with small changes.",
    "3": "Some variety in wording, same ideas.",
    "4": "Varied wording and ideas, a few overlaps.",
    "5": "Every utterance is distinct in wording and idea.",
}
GROUPINGS = ("character_emotion", "emotion", "both")
SIMILARITY_KIND = "character_similarity"
SIMILARITY_JOB = "review_similarity"
SIMILARITY_SAMPLE = 300  # utterances per emotion: pairs grow with the square
PAPER_SIMILARITY = {"neutral": ("0.30", "0.16")}


class Diversity(ReviewTask):
    name = "diversity"
    title = "Diversity"
    summary = "How diverse are these utterances? (one character x one emotion, or one emotion across characters)"
    order = 40
    default_kind = "contextless"  # groups never mix the two kinds of example
    guidelines = "Judge how different the utterances are from each other, in wording and in idea."

    def questions(self) -> list[QuestionSpec]:
        return [
            QuestionSpec("diversity", "How diverse are these utterances?", "rating", {"anchors": ANCHORS}),
            QuestionSpec("repeated", "Which utterances repeat another one?", "multi_label",
                         {"choices_from": CHOICES_FROM_GROUP}),
        ]

    def items(self, session: Session, selection: Selection, taxonomy_id: int | None) -> list[dict[str, Any]]:
        if selection.group_by not in GROUPINGS:
            raise ValueError(f"Diversity groups are one of {', '.join(GROUPINGS)}.")
        ids = select_example_ids(session, replace(self.selection(selection), limit=None), taxonomy_id)
        groups = []
        for group_by in (("character_emotion", "emotion") if selection.group_by == "both" else (selection.group_by,)):
            groups += diversity_groups(session, ids, taxonomy_id, group_by, selection.group_size)
        if selection.limit:
            groups = _balanced(groups, selection.limit)
        return [{"example_id": g["example_ids"][0], "payload": g} for g in groups]

    def shown(self, examples: list[ShownExample], payload: dict[str, Any], show_teacher: bool) -> list[Shown]:
        who = ("one emotion, each utterance from a different character" if payload.get("group_by") == "emotion"
               else "one character, one emotion")
        blocks = [Shown("caption", f"{payload.get('emotion', '')}: {who}")]
        return blocks + [Shown("box", f"{n}. {e.text}") for n, e in enumerate(examples, start=1)]

    def results(self, items: list[AnsweredItem], annotators: list[str]) -> TaskResults:
        by_grouping: dict[str, list[int]] = defaultdict(list)
        repeats: dict[str, list[int]] = defaultdict(list)
        for item in items:
            for answer in item.answers.values():
                if answer.get("diversity") in RATING_VALUES:
                    by_grouping[item.payload.get("group_by", "character_emotion")].append(answer["diversity"])
                    repeats[item.payload.get("group_by", "character_emotion")].append(len(answer.get("repeated") or []))
        names = {"character_emotion": "one character x one emotion", "emotion": "one emotion across characters"}
        figures = tuple(Figure(f"Mean diversity rating, {names[g]}", float(np.mean(v)) if v else None,
                               note=f"{len(v)} answers") for g, v in sorted(by_grouping.items()))
        rows = tuple({"groups": names[g], "answers": len(v), "mean rating": float(np.mean(v)),
                      "mean repeats marked": float(np.mean(repeats[g]))} for g, v in sorted(by_grouping.items()))
        return TaskResults(figures, (("Ratings per kind of group", rows),))


def _balanced(groups: list[dict], limit: int) -> list[dict]:
    """At most `limit` groups, taken in turn from each kind of group."""
    kinds: dict[str, list[dict]] = defaultdict(list)
    for group in groups:
        kinds[group["group_by"]].append(group)
    picked: list[dict] = []
    queues = [list(v) for _k, v in sorted(kinds.items())]
    while len(picked) < limit and any(queues):
        for queue in queues:
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
    return picked


def _characters(session: Session, ids: list[int]) -> dict[int, int | None]:
    characters: dict[int, int | None] = {}
    for start in range(0, len(ids), CHUNK):
        characters.update(session.execute(select(Example.id, Example.character_id)
                                          .where(Example.id.in_(ids[start:start + CHUNK]))).tuples().all())
    return characters


def diversity_groups(session: Session, ids: list[int], taxonomy_id: int | None,
                     group_by: str, group_size: int) -> list[dict[str, Any]]:
    """Groups of 2..group_size utterances sharing an emotion: of one character ('character_emotion'),
    or each of a different character ('emotion')."""
    emotions = top_labels(session, ids, taxonomy_id)
    characters = _characters(session, ids)
    buckets: dict[tuple, list[int]] = defaultdict(list)
    for example_id in ids:
        emotion = emotions.get(example_id)
        if emotion is None or (group_by == "emotion" and characters.get(example_id) is None):
            continue
        key = (characters.get(example_id) or 0, emotion) if group_by == "character_emotion" else (0, emotion)
        buckets[key].append(example_id)
    groups = []
    for (character_id, emotion), members in sorted(buckets.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        chunks = (_one_per_character(members, characters, group_size) if group_by == "emotion"
                  else _chunks(members, group_size))
        groups += [{"example_ids": chunk, "emotion": emotion, "character_id": character_id or None,
                    "group_by": group_by} for chunk in chunks if len(chunk) >= 2]
    return groups


def _chunks(members: list[int], size: int) -> list[list[int]]:
    chunks = [members[s:s + size] for s in range(0, len(members), size)]
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2].extend(chunks.pop())  # a lone leftover joins the group before it
    return chunks


def _one_per_character(members: list[int], characters: dict[int, int | None], size: int) -> list[list[int]]:
    """Round after round, one utterance of each character: no group holds two of one character."""
    per_character: dict[int, list[int]] = defaultdict(list)
    for example_id in members:
        per_character[characters[example_id]].append(example_id)
    groups = []
    depth = max((len(v) for v in per_character.values()), default=0)
    for round_ in range(depth):
        row = [v[round_] for _c, v in sorted(per_character.items()) if round_ < len(v)]
        groups += [row[s:s + size] for s in range(0, len(row), size)]
    return groups


# --------------------------------------------------------------------------- automatic similarity


def within_across(vectors: np.ndarray, characters: list[int]) -> tuple[float | None, float | None]:
    """Mean cosine similarity of pairs of the same character and of different characters."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T
    who = np.asarray(characters)
    same = who[:, None] == who[None, :]
    upper = np.triu(np.ones_like(same, dtype=bool), k=1)
    within, across = sims[same & upper], sims[~same & upper]
    return (float(within.mean()) if within.size else None, float(across.mean()) if across.size else None)


def compute_character_similarity(actor: Actor | None, embed=None, seed: int = 0) -> dict[str, int]:
    """Within- vs across-character similarity per emotion of context-less utterances (replacing the
    previous figures). `embed(texts) -> vectors`; the bundled MiniLM by default."""
    require_admin(actor)
    if embed is None:
        from core.embeddings import embed
    with read_session() as session:
        rows = session.execute(select(Example.id, Example.text, Example.character_id).where(
            Example.kind == "contextless", Example.character_id.is_not(None)).order_by(Example.id)).tuples().all()
        emotions = top_labels(session, [r[0] for r in rows], None)
    by_emotion: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
    for example_id, text, character_id in rows:
        if example_id in emotions:
            by_emotion[emotions[example_id]].append((example_id, text, character_id))
    rng = np.random.default_rng(seed)
    out = []
    for emotion, members in sorted(by_emotion.items()):
        if len({c for _i, _t, c in members}) < 2:
            continue  # one character only: nothing to compare across
        if len(members) > SIMILARITY_SAMPLE:
            members = [members[i] for i in sorted(rng.choice(len(members), SIMILARITY_SAMPLE, replace=False))]
        within, across = within_across(np.asarray(embed([t for _i, t, _c in members])), [c for _i, _t, c in members])
        for metric, value in (("within", within), ("across", across)):
            out.append({"kind": SIMILARITY_KIND, "group_by": "emotion", "group_key": emotion, "metric": metric,
                        "value": value, "size": len(members), "data": {}, "computed_by": "minilm"})
    with write_session() as session:
        session.execute(delete(GroupSignal).where(GroupSignal.kind == SIMILARITY_KIND))
        if out:
            session.execute(insert(GroupSignal), out)
    return {"emotions": len(out) // 2}


def enqueue_character_similarity(actor: Actor | None) -> int:
    require_admin(actor)
    return jobs.enqueue(actor, SIMILARITY_JOB, {}, title="Within- vs across-character similarity")


@jobs.handler(SIMILARITY_JOB)
def run_similarity_job(ctx: jobs.JobContext) -> dict[str, Any]:
    ctx.set_total(1, note="embedding the context-less utterances")
    result = compute_character_similarity(ctx.actor)
    with ctx.batch() as session:
        ctx.advance(session, 1, note=f"{result['emotions']} emotions")
    return result


def character_similarity(actor: Actor | None) -> list[dict[str, Any]]:
    """The stored figures per emotion (with the paper's where it gives one), largest first."""
    require_page(actor, "dashboard")
    found: dict[str, dict[str, Any]] = {}
    with read_session() as session:
        for row in session.scalars(select(GroupSignal).where(GroupSignal.kind == SIMILARITY_KIND)):
            entry = found.setdefault(row.group_key, {"emotion": row.group_key, "utterances": row.size})
            entry[row.metric] = row.value
    for emotion, entry in found.items():
        paper = PAPER_SIMILARITY.get(emotion)
        entry["paper"] = f"{paper[0]} vs {paper[1]}" if paper else ""
    return sorted(found.values(), key=lambda r: (-r["utterances"], r["emotion"]))


TASK = Diversity()
