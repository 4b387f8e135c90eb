"""Zero-shot regression: a continuous score for any dimension given its two poles (valence: "pleasant" vs
"unpleasant" wordings), from any model that embeds texts and wordings in one space (a zero-shot model, the
untrained-embedding baseline).

A pole is the mean embedding of its wordings. How a text's embedding becomes a position between the poles
(0 = the low pole, 1 = the high one) is a mapping (MAPPINGS), then stretched linearly onto the dimension's
scale (EmoBank: 1-5):
- "axis" (the default): the cosine of the text with the axis from the low pole to the high one (SemAxis, An
  et al. 2018), (1 + cos) / 2. It has no temperature, so every model, trained or not, is scored by the same
  function of its embeddings: a comparison between two models differs only in their weights.
- "logistic": the two-way softmax of the text's cosines with the two poles at the model's own learned
  temperature, sigmoid(scale * (cos_high - cos_low)). A trained model's temperature (10.7 in bench.zeroshot)
  pushes it toward the ends of the scale, and the untrained baseline has none (1): the two are not scored alike.
No target label is used: the wordings below were written before any EmoBank figure was seen, and a user types
their own on the Playground. Figures against gold scores: Pearson r and the mean absolute error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dimension:
    name: str
    high: tuple[str, ...]  # wordings of the high pole
    low: tuple[str, ...]  # wordings of the low pole
    low_value: float = 0.0  # the scale the score is reported on
    high_value: float = 1.0

    def check(self) -> None:
        if not [w for w in self.high if w.strip()] or not [w for w in self.low if w.strip()]:
            raise ValueError("give at least one wording for each pole")
        if self.high_value <= self.low_value:
            raise ValueError("the high end of the scale must be above the low end")


VALENCE = Dimension("valence", ("pleasant", "feeling good", "happy and pleased"),
                    ("unpleasant", "feeling bad", "unhappy and upset"), 1.0, 5.0)
AROUSAL = Dimension("arousal", ("excited", "aroused and alert", "full of energy"),
                    ("calm", "relaxed and sleepy", "without energy"), 1.0, 5.0)
DIMENSIONS = {d.name: d for d in (VALENCE, AROUSAL)}


def parse_poles(text: str) -> tuple[str, ...]:
    """One wording per line (or separated by ';'), blanks dropped."""
    return tuple(w.strip() for line in (text or "").splitlines() for w in line.split(";") if w.strip())


def pole_vector(predictor, wordings: Sequence[str]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        vectors = predictor._embed([w for w in wordings if w.strip()], predictor.label_max_length)
        mean = vectors.float().cpu().numpy().mean(0)
    return mean / max(float(np.linalg.norm(mean)), 1e-9)


MAPPINGS = {
    "axis": "the text's cosine with the axis from the low pole to the high one: the same function for every model",
    "logistic": "the two-way softmax of the text's cosines with the two poles, at the model's own temperature",
}
DEFAULT_MAPPING = "axis"
MAPPING_HELP = "; ".join(f"{name}: {meaning}" for name, meaning in MAPPINGS.items())


def positions(predictor, texts: Sequence[str], dimension: Dimension, contexts: Sequence[str | None] | None = None,
              mapping: str = DEFAULT_MAPPING) -> np.ndarray:
    """Each text's position between the poles: 0 at the low pole, 1 at the high one."""
    if mapping not in MAPPINGS:
        raise ValueError(f"unknown mapping {mapping!r}: pick one of {', '.join(MAPPINGS)}")
    if not hasattr(predictor, "embed_texts"):
        raise ValueError("this model does not embed texts and wordings in one space: pick a zero-shot model or "
                         "the embedding baseline for a dimension score")
    dimension.check()
    return place(predictor, predictor.embed_texts(list(texts), contexts), dimension, mapping)


def place(predictor, embedded: np.ndarray, dimension: Dimension, mapping: str = DEFAULT_MAPPING) -> np.ndarray:
    """Positions of texts the predictor already embedded (one embedding pass serves every mapping)."""
    high, low = pole_vector(predictor, dimension.high), pole_vector(predictor, dimension.low)
    if mapping == "axis":
        axis = high - low
        norms = np.linalg.norm(embedded, axis=1) * max(float(np.linalg.norm(axis)), 1e-9)
        return (1.0 + (embedded @ axis) / np.maximum(norms, 1e-9)) / 2.0
    scale = float(predictor.log_scale.detach().exp())
    return 1.0 / (1.0 + np.exp(-scale * (embedded @ high - embedded @ low)))


def scores(predictor, texts: Sequence[str], dimension: Dimension,
           contexts: Sequence[str | None] | None = None, mapping: str = DEFAULT_MAPPING) -> np.ndarray:
    """Each text's score on the dimension's scale."""
    return on_scale(dimension, positions(predictor, texts, dimension, contexts, mapping))


def on_scale(dimension: Dimension, toward_high: np.ndarray) -> np.ndarray:
    return dimension.low_value + (dimension.high_value - dimension.low_value) * toward_high


def figures(predicted: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Pearson r and mean absolute error of predicted against gold scores."""
    predicted, gold = np.asarray(predicted, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if len(predicted) != len(gold) or len(gold) < 2:
        raise ValueError("need at least two texts with gold scores")
    r = 0.0 if predicted.std() == 0 or gold.std() == 0 else float(np.corrcoef(predicted, gold)[0, 1])
    return {"pearson_r": r, "mae": float(np.abs(predicted - gold).mean()), "examples": int(len(gold))}


@dataclass
class RegressionSet:
    """Texts with gold scores on one dimension (EmoBank valence)."""

    name: str
    dimension: Dimension
    texts: list[str]
    gold: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)

    def head(self, n: int) -> RegressionSet:
        return RegressionSet(self.name, self.dimension, self.texts[:n], self.gold[:n])


def evaluate(predictor, dataset: RegressionSet, mapping: str = DEFAULT_MAPPING,
             embedded: np.ndarray | None = None) -> dict:
    """Every figure of one regression evaluation (plain JSON types), stored like a classification evaluation.
    `embedded`: the dataset's texts already embedded by this predictor (scoring several mappings)."""
    if embedded is None:
        predicted = scores(predictor, dataset.texts, dataset.dimension, mapping=mapping)
    else:
        predicted = on_scale(dataset.dimension, place(predictor, embedded, dataset.dimension, mapping))
    out = figures(predicted, dataset.gold)
    out.update(task="regression", dimension=dataset.dimension.name, high=list(dataset.dimension.high),
               low=list(dataset.dimension.low), scale=[dataset.dimension.low_value, dataset.dimension.high_value],
               mapping=mapping)
    return out
