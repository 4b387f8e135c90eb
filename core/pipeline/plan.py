"""What a run will ask: its settings, the presets, the emotion quotas, and the cost before launch."""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select

from core.pipeline.steps.base import NEUTRAL, NEUTRAL_DESCRIPTION  # noqa: F401 (re-exported for callers)
from db.models import Passage, Story
from db.session import read_session

CHARS_PER_TOKEN = 4  # English prose, when no earlier run of the model measured it
PAPER, BALANCED = "paper", "balanced"

# A preset is data: the steps a run takes, in order, and the settings it starts from.
PRESETS: dict[str, dict[str, Any]] = {
    PAPER: {
        "title": "Emo Pillars (paper)",
        "help": "One call per character for its emotional utterances (emotions the teacher picks) plus neutral "
                "ones; top-5 labels in 0.1 steps; contexts for a share of the utterances; both contextual variants; "
                "greedy decoding with a small repetition penalty.",
        "steps": ("characters", "utterances", "labels", "context", "clean", "rewrite"),
        "settings": {"max_characters": 15, "emotional": 8, "neutral": 2, "max_emotions": 5, "score_step": 0.1,
                     "context_share": round(1 / 3, 4), "variants": ["original", "rewritten"], "greedy": True,
                     "repetition_penalty": 1.03, "story_window_words": 600},
    },
    BALANCED: {
        "title": "Balanced targets",
        "help": "One call per utterance, each steered to an emotion from a seeded cycle over the taxonomy (every "
                "emotion gets its share); a context for every utterance; the rewritten variant only.",
        "steps": ("characters", "targeted_utterances", "labels", "context", "clean", "rewrite"),
        "settings": {"max_characters": 3, "emotional": 8, "neutral": 2, "max_emotions": 3, "score_step": 0.0,
                     "context_share": 1.0, "variants": ["rewritten"], "greedy": False,
                     "repetition_penalty": 1.0, "story_window_words": 0},
    },
}
MAX_CHARACTERS = 30
VARIANTS = ("original", "rewritten")


class PlanError(ValueError):
    """Settings a run cannot start with; the message says which."""


@dataclass
class RunConfig:
    corpus_id: int
    taxonomy_id: int
    story_ids: list[int] = field(default_factory=list)
    preset: str = PAPER
    max_characters: int = 15  # per story
    emotional: int = 8  # emotional utterances per character
    neutral: int = 2  # neutral utterances per character
    seed: int = 0
    max_emotions: int = 5  # emotions the teacher may name per utterance
    score_step: float = 0.1  # scores in these steps (0 = any value in [0, 1])
    context_share: float = round(1 / 3, 4)  # of the context-less examples, the share that gets a context
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))  # contextual variants stored
    greedy: bool = True  # temperature 0 (the engine's top-p and seed are then moot)
    repetition_penalty: float = 1.03
    story_window_words: int = 600  # characters read from windows of this many words (0 = per passage)
    dedup_similarity: float = 0.9  # cosine similarity above which a character's utterance is a repeat
    weights: dict[str, float] = field(default_factory=dict)  # balanced: per-emotion quota weights (default 1)
    stride: int = 0  # balanced: emotions a character advances the quota cycle by; fixed at creation (= emotional)

    @classmethod
    def for_preset(cls, preset: str, corpus_id: int, taxonomy_id: int, **overrides: Any) -> "RunConfig":
        if preset not in PRESETS:
            raise PlanError(f"Unknown preset {preset!r}: choose {' or '.join(PRESETS)}.")
        return cls(corpus_id=corpus_id, taxonomy_id=taxonomy_id, preset=preset,
                   **{**PRESETS[preset]["settings"], **overrides})

    @property
    def steps(self) -> tuple[str, ...]:
        return PRESETS[self.preset]["steps"]

    def check(self) -> None:
        if self.preset not in PRESETS:
            raise PlanError(f"Unknown preset {self.preset!r}: choose {' or '.join(PRESETS)}.")
        if not self.story_ids:
            raise PlanError("Choose at least one story.")
        if not 1 <= self.max_characters <= MAX_CHARACTERS:
            raise PlanError(f"Characters per story: 1 to {MAX_CHARACTERS}.")
        if not 0 <= self.emotional <= 50 or not 0 <= self.neutral <= 20 or self.emotional + self.neutral == 0:
            raise PlanError("Utterances per character: 0-50 emotional and 0-20 neutral, at least one in all.")
        if self.preset == PAPER and self.emotional + self.neutral > 20:
            raise PlanError("One call per character writes at most 20 utterances (emotional + neutral).")
        if not 1 <= self.max_emotions <= 5:
            raise PlanError("Emotions per utterance: 1 to 5.")
        if self.score_step not in (0, 0.0, 0.05, 0.1, 0.2, 0.25):
            raise PlanError("Score steps: 0 (any), 0.05, 0.1, 0.2 or 0.25.")
        if not 0 < self.context_share <= 1:
            raise PlanError("Share of utterances that get a context: above 0, at most 1.")
        if not self.variants or set(self.variants) - set(VARIANTS):
            raise PlanError(f"Contextual variants: one or both of {', '.join(VARIANTS)}.")
        if not 1.0 <= self.repetition_penalty <= 2.0:
            raise PlanError("Repetition penalty: 1 (off) to 2.")
        if self.story_window_words and not 100 <= self.story_window_words <= 3000:
            raise PlanError("Story window: 0 (per passage) or 100 to 3000 words.")
        if not 0.5 <= self.dedup_similarity <= 1.0:
            raise PlanError("Near-duplicate similarity: between 0.5 and 1.0.")
        if any(w < 0 for w in self.weights.values()):
            raise PlanError("Quota weights cannot be negative.")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        known = set(cls.__dataclass_fields__)
        if "preset" not in data:  # a run recorded before presets existed ran the balanced-targets way
            data = {**PRESETS[BALANCED]["settings"], **data, "preset": BALANCED}
        return cls(**{k: v for k, v in data.items() if k in known})


def contexts_for(share: float, contextless: float) -> int:
    """How many context-less examples get a context: the share, rounded, and at least one when there is one
    (a small run asked for contexts should show some)."""
    return max(1 if contextless >= 1 else 0, round(share * contextless))


def request_seed(run_seed: int, *parts: object) -> int:
    """A per-request seed from the run's seed and what the request is about (stable across runs)."""
    digest = hashlib.sha256("|".join(map(str, (run_seed, *parts))).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def emotion_cycle(label_names: list[str], weights: dict[str, float], seed: int) -> list[str]:
    """The order emotions are handed out in: each label as often as its weight, shuffled by seed.

    Characters take consecutive stretches of this cycle, so over a run every emotion gets its share
    (counts differ by at most one per pass when weights are equal).
    """
    cycle: list[str] = []
    for name in label_names:
        if name == NEUTRAL:
            continue
        cycle.extend([name] * max(0, round(weights.get(name, 1.0))))
    if not cycle:
        raise PlanError("The quota weights leave no emotion to generate.")
    random.Random(seed).shuffle(cycle)
    return cycle


def slot_emotions(cycle: list[str], character_ordinal: int, stride: int, emotional: int, neutral: int) -> list[tuple[str, str]]:
    """(slot key, target emotion) for one character: 'e0'.. from the cycle, then 'n0'.. neutral."""
    start = character_ordinal * max(1, stride)
    slots = [(f"e{j}", cycle[(start + j) % len(cycle)]) for j in range(emotional)]
    return slots + [(f"n{j}", NEUTRAL) for j in range(neutral)]


def sample_stories(corpus_id: int, size: int, seed: int) -> list[int]:
    with read_session() as session:
        ids = list(session.scalars(select(Story.id).where(Story.corpus_id == corpus_id).order_by(Story.position)))
    if not ids:
        raise PlanError("This corpus has no stories.")
    return sorted(random.Random(seed).sample(ids, min(size, len(ids))))


def story_windows(passages: list[tuple[int, str]], window_words: int) -> list[tuple[int, str]]:
    """A story's passages grouped into consecutive windows of at most `window_words` words:
    (first passage id, text). 0 = each passage on its own. A window always takes at least one passage."""
    if not window_words:
        return list(passages)
    windows: list[tuple[int, list[str]]] = []
    size = 0
    for passage_id, text in passages:
        length = len(text.split())
        if windows and size + length <= window_words:
            windows[-1][1].append(text)
            size += length
        else:
            windows.append((passage_id, [text]))
            size = length
    return [(first, "\n\n".join(texts)) for first, texts in windows]


# --------------------------------------------------------------------------- cost


@dataclass(frozen=True)
class StageEstimate:
    stage: str
    calls: int
    prompt_tokens: int
    output_tokens: int

    @property
    def max_output_tokens(self) -> int:  # the name older callers read
        return self.output_tokens


@dataclass(frozen=True)
class Estimate:
    stories: int
    passages: int
    characters: int
    utterances: int
    contexts: int
    stages: tuple[StageEstimate, ...]
    measured_runs: int  # earlier runs of this model and preset whose figures the estimate uses (0 = upper bound)

    @property
    def calls(self) -> int:
        return sum(s.calls for s in self.stages)

    @property
    def tokens(self) -> int:
        return sum(s.prompt_tokens + s.output_tokens for s in self.stages)

    def as_record(self) -> dict[str, Any]:
        """What a run keeps of the estimate it was launched with (its stats' "estimate"), beside what it spends."""
        return {"calls": self.calls, "tokens": self.tokens, "measured_runs": self.measured_runs,
                "characters": self.characters, "contextless": self.utterances, "contexts": self.contexts,
                "stages": {s.stage: {"calls": s.calls, "tokens": s.prompt_tokens + s.output_tokens}
                           for s in self.stages}}


def spent_totals(spent: dict[str, dict[str, int]]) -> tuple[int, int]:
    """(calls, tokens) over a run's per-stage `stats.spent`."""
    return (sum(s.get("calls", 0) for s in spent.values()),
            sum(s.get("prompt_tokens", 0) + s.get("completion_tokens", 0) for s in spent.values()))


def off_by(estimated: float, spent: float) -> float | None:
    """How far an estimate was from what was spent: |estimated - spent| / spent (None when nothing was spent)."""
    return round(abs(estimated - spent) / spent, 4) if spent else None


@dataclass
class Plan:
    """The counts a run is expected to reach, for the steps' `planned_calls`."""

    config: RunConfig
    windows: list[str]  # the texts the characters step reads
    stories: int
    passages: int
    characters: float
    contextless: float
    contexts: float
    label_lines: str
    template_chars: dict[str, int]
    description_chars: float = 90.0  # a character's description, typical
    utterance_chars: float = 90.0  # an utterance, typical
    context_chars: float = 400.0  # a context, typical

    @property
    def mean_window(self) -> float:
        return sum(map(len, self.windows)) / len(self.windows) if self.windows else 0.0


def build_plan(config: RunConfig, templates: dict[str, Any], label_lines: str,
               history: "History | None" = None) -> Plan:
    with read_session() as session:
        rows = session.execute(select(Passage.story_id, Passage.id, Passage.text).join(Story)
                               .where(Passage.story_id.in_(config.story_ids))
                               .order_by(Story.position, Passage.position)).tuples().all()
    by_story: dict[int, list[tuple[int, str]]] = {}
    for story_id, passage_id, text in rows:
        by_story.setdefault(story_id, []).append((passage_id, text))
    windows = [text for passages in by_story.values() for _, text in story_windows(passages, config.story_window_words)]
    history = history or History()
    stories = len(by_story)
    characters = stories * min(config.max_characters, history.characters_per_story or config.max_characters)
    contextless = characters * (history.contextless_per_character or (config.emotional + config.neutral))
    return Plan(config, windows, stories, len(rows), characters, contextless, contexts_for(config.context_share, contextless),
                label_lines, {stage: len(t.system_prompt) + len(t.user_prompt) for stage, t in templates.items()},
                **history.typical_lengths)


@dataclass
class History:
    """Figures measured on earlier finished runs of the same model and preset (ratios, not counts)."""

    runs: int = 0
    characters_per_story: float = 0.0
    contextless_per_character: float = 0.0
    calls_per_request: dict[str, float] = field(default_factory=dict)  # re-asks and validation retries
    prompt_per_call: dict[str, float] = field(default_factory=dict)
    output_per_call: dict[str, float] = field(default_factory=dict)
    typical_lengths: dict[str, float] = field(default_factory=dict)


def measured_history(model: str, preset: str, limit: int = 5) -> History:
    """The figures of the last finished runs of `model` with `preset` (their stats carry what they spent)."""
    from db.models import GenerationRun, RunStatus

    with read_session() as session:
        runs = session.scalars(select(GenerationRun).where(GenerationRun.model == model,
                                                           GenerationRun.status == RunStatus.succeeded)
                               .order_by(GenerationRun.id.desc()).limit(50)).all()
        stats = [dict(r.stats) for r in runs if (r.config or {}).get("preset") == preset
                 and (r.stats or {}).get("measured")][:limit]
    history = History(runs=len(stats))
    if not stats:
        return history
    total = lambda key: sum(s["measured"].get(key, 0) for s in stats)  # noqa: E731
    history.characters_per_story = total("characters") / max(1, total("stories"))
    history.contextless_per_character = total("contextless") / max(1, total("characters"))
    for stage in {k for s in stats for k in s.get("spent", {})}:
        spent = [s["spent"][stage] for s in stats if stage in s.get("spent", {})]
        requests = sum(x["requests"] for x in spent)
        calls = sum(x["calls"] for x in spent)
        if requests and calls:
            history.calls_per_request[stage] = calls / requests
            history.output_per_call[stage] = sum(x["completion_tokens"] for x in spent) / calls
            history.prompt_per_call[stage] = sum(x["prompt_tokens"] for x in spent) / calls
    lengths = {key: total(key) / max(1, total(count)) for key, count in
               (("description_chars", "characters"), ("utterance_chars", "contextless"), ("context_chars", "contexts"))
               if total(count)}
    history.typical_lengths = lengths
    return history


def estimate(config: RunConfig, templates: dict[str, Any], label_lines: str, model: str = "") -> Estimate:
    """LLM calls and tokens of a run, before launch.

    Without an earlier run of this model and preset it is an upper bound: every character found, every
    utterance kept, each answer accepted at the first try and as long as the step's token budget. After
    one, the counts use that run's measured ratios (characters per story, utterances kept per character,
    re-asks per request, prompt and output tokens per call).
    """
    from core.pipeline import steps as registry

    history = measured_history(model, config.preset) if model else History()
    plan = build_plan(config, templates, label_lines, history)
    stages = []
    for name in config.steps:
        step = registry.get(name)
        calls, prompt_chars = step.planned_calls(plan)
        factor = history.calls_per_request.get(step.stage, 1.0)
        per_call = history.prompt_per_call.get(step.stage)
        prompt = calls * factor * per_call if per_call is not None else prompt_chars / CHARS_PER_TOKEN
        out = history.output_per_call.get(step.stage)
        budget = step.max_tokens(_budget_context(config))
        stages.append(StageEstimate(step.stage, round(calls * factor), round(prompt),
                                    round(calls * factor * (out if out is not None else budget))))
    return Estimate(plan.stories, plan.passages, round(plan.characters), round(plan.contextless), round(plan.contexts),
                    tuple(stages), history.runs)


def _budget_context(config: RunConfig):
    """A minimal step context for token budgets (they depend on the settings only)."""
    from core.llm.types import Sampling
    from core.pipeline.steps.base import StepContext

    return StepContext(None, config, None, [], {}, {}, None, Sampling())
