"""Contrastive distillation: a compact text encoder that predicts zero-shot over any label set.

Texts and label descriptions live in one embedding space (mean-pooled, L2-normalised encoder
outputs). A text's score for a label is the cosine between the text and the label's prototype,
the mean embedding of several wordings of the label (its name, "feeling <name>", its description,
"<name>: <description>"); a learned scale and bias turn the cosine into a probability.

Two training modes (ContrastiveConfig.mode):

- "distill" (the default, the contrastive-distillation paper's method): texts and the TEACHER's free-text
  emotion descriptors only; no human or gold label is read, not even by the loader (the worker job
  reads texts and descriptors, never a version's labels). Each step embeds the batch's texts T and
  every distinct descriptor phrase D of the batch (a text has several), and scores the alignment
  matrix M = scale * T D^T + bias (learned temperature and bias) with a sigmoid loss: every (text,
  phrase) pair is a binary decision, positive when the phrase is one of the text's own descriptors
  (SigLIP-style; several positives per text, and a phrase two texts share is positive for both, which a
  softmax over the batch could not express). The decision rule is fixed a priori (rules.DEFAULT_RULE).
- "labels": the earlier supervised mode, on a version's labels: every step embeds EVERY label of the
  training taxonomy (one random wording each) and scores each text against them (softmax cross-entropy
  + BCE on the scaled cosine), plus an InfoNCE term between each text and one of its descriptors (the
  teacher's, or its labels reworded) with same-label negatives masked. Its decision rule is calibrated
  on the version's dev split.
Varying the wording of labels and descriptors makes the encoder read descriptions instead of
memorising the training label strings, which is what lets it score label sets it never saw.

Decision rules live in core.train.rules (shared with evaluation and the baselines).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core import jobs
from core.train.classifier import PRECISIONS, use_bf16
from core.train.rules import DEFAULT_RULE, RULE_GRIDS, Rule, apply_rule, calibrate_rule  # noqa: F401 (re-exported)

CONFIG_FILE = "emoforge_contrastive.json"
ST_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")

# Wordings of a label seen in training (one picked at random per label and step) and averaged at prediction.
TEMPLATES_NAME = ("{name}", "feeling {name}", "a text expressing {name}")
TEMPLATES_DESCRIBED = ("{name}: {description}", "{description}", "feeling {name}. {description}")


MODES = ("distill", "labels")
# Descriptor phrases of one text used per step (a random subset when it has more): bounds the matrix width.
MAX_PHRASES_PER_TEXT = 4


@dataclass
class ContrastiveConfig:
    mode: str = "distill"  # distill: teacher descriptors only (no label read) | labels: a version's labels
    base_model: str = ""  # encoder folder; "" = the bundled all-MiniLM-L6-v2
    epochs: float = 1.0
    max_steps: int = 0  # > 0: stop after this many steps (overrides epochs)
    batch_size: int = 32
    # The encoder's learning rate bench.zeroshot measures, and the one the Playground's form always offered
    # (the CLI said 5e-5 before: one default now, read by the form, the CLI and the bench).
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_length: int = 64
    label_max_length: int = 48
    softmax_weight: float = 1.0
    bce_weight: float = 1.0
    descriptor_weight: float = 0.5
    frozen_layers: int = 0  # lower transformer layers kept frozen (the word embeddings always are)
    init_scale: float = 20.0
    init_bias: float = -8.0
    head_learning_rate: float = 1e-2  # scale and bias
    # Weight-space ensembling with the base encoder (WiSE-FT, Wortsman et al. 2022): the saved encoder is
    # alpha * trained + (1 - alpha) * base weights; 1.0 keeps the trained weights as they are.
    wise_alpha: float = 1.0
    # auto | fp32 | bf16: bfloat16 autocast for the training passes. fp32 by default: on our AVX512-BF16 CPU
    # autocast made these short sequences slower (17.8 vs 23.8 texts/s), unlike the classifier's.
    precision: str = "fp32"
    seed: int = 13
    log_every: int = 10
    checkpoint_every: int = 200

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ContrastiveConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainExample:
    text: str
    labels: tuple[int, ...]  # positions in the training label list
    context: str | None = None
    descriptors: tuple[str, ...] = ()  # teacher descriptions; label-made ones are added in training


def label_wordings(name: str, description: str = "") -> list[str]:
    name = " ".join(name.replace("_", " ").split())
    description = " ".join((description or "").split())
    wordings = [t.format(name=name) for t in TEMPLATES_NAME]
    if description:
        wordings += [t.format(name=name, description=description) for t in TEMPLATES_DESCRIBED]
    return wordings


def label_descriptors(names: Sequence[str], descriptions: Sequence[str], rng: random.Random) -> str:
    """A descriptor made from a text's labels, worded at random ("feeling joy and relief", descriptions...)."""
    names = [" ".join(n.replace("_", " ").split()) for n in names]
    style = rng.randrange(4)
    if style == 0:
        return " and ".join(names)
    if style == 1:
        return "feeling " + ", ".join(names)
    if style == 2 and any(descriptions):
        return " ".join(d for d in descriptions if d)
    return "; ".join(f"{n}: {d}" if d else n for n, d in zip(names, descriptions))


def descriptor_phrases(descriptors: Sequence[str]) -> tuple[str, ...]:
    """A text's descriptor rows as distinct short phrases ("relieved; still wary of him" -> two phrases):
    the teacher may write several descriptors in one answer, each one is a positive of its own."""
    out: list[str] = []
    seen: set[str] = set()
    for row in descriptors:
        for part in re.split(r"[;\n|,]", row or ""):
            phrase = " ".join(part.split()).strip(" .-*")
            key = phrase.lower()
            if phrase and key not in seen:
                seen.add(key)
                out.append(phrase[:120])
    return tuple(out)


def text_input(text: str, context: str | None, sep: str) -> str:
    """The utterance first, then its context: truncation cuts the context, never the utterance."""
    return f"{text} {sep} {context}" if context else text


# --------------------------------------------------------------------------- the model


class ContrastiveModel:
    """Encoder + scale/bias. `predict` scores texts against ANY label set (names and descriptions)."""

    kind = "contrastive"

    def __init__(self, path: str | Path, *, scale: float = 20.0, bias: float = -8.0, rule: Rule | None = None,
                 labels: list[str] | None = None, descriptions: list[str] | None = None,
                 max_length: int = 64, label_max_length: int = 48, device: str | None = None):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.path = Path(path)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.encoder = AutoModel.from_pretrained(str(path)).to(self.device)
        self.encoder.eval()
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(scale), device=self.device))
        self.bias = torch.nn.Parameter(torch.tensor(float(bias), device=self.device))
        self.rule = rule or Rule()
        self.labels = list(labels or [])
        self.descriptions = list(descriptions or [""] * len(self.labels))
        self.max_length, self.label_max_length = max_length, label_max_length

    # ----- embedding

    def _embed(self, texts: Sequence[str], max_length: int):
        import torch

        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                               return_tensors="pt").to(self.device)
        hidden = self.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def embed_texts(self, texts: Sequence[str], contexts: Sequence[str | None] | None = None,
                    batch_size: int = 128) -> np.ndarray:
        import torch

        contexts = list(contexts) if contexts is not None else [None] * len(texts)
        inputs = [text_input(t, c, self.tokenizer.sep_token) for t, c in zip(texts, contexts)]
        order = np.argsort([len(t) for t in inputs])  # similar lengths together: less padding
        out = np.zeros((len(inputs), self.encoder.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(inputs), batch_size):
                index = order[start:start + batch_size]
                out[index] = self._embed([inputs[i] for i in index], self.max_length).float().cpu().numpy()
        return out

    def label_prototypes(self, names: Sequence[str], descriptions: Sequence[str] | None = None) -> np.ndarray:
        """One unit vector per label: the mean embedding of the label's wordings."""
        import torch

        descriptions = list(descriptions) if descriptions is not None else [""] * len(names)
        wordings = [label_wordings(n, d) for n, d in zip(names, descriptions)]
        flat = [w for ws in wordings for w in ws]
        with torch.inference_mode():
            vectors = self._embed(flat, self.label_max_length).float().cpu().numpy()
        out, start = np.zeros((len(names), vectors.shape[1]), dtype=np.float32), 0
        for i, ws in enumerate(wordings):
            mean = vectors[start:start + len(ws)].mean(0)
            out[i] = mean / max(np.linalg.norm(mean), 1e-9)
            start += len(ws)
        return out

    def cosines(self, texts: Sequence[str], contexts: Sequence[str | None] | None = None,
                label_names: Sequence[str] | None = None,
                label_descriptions: Sequence[str] | None = None) -> np.ndarray:
        names, descriptions = self._label_set(label_names, label_descriptions)
        return self.embed_texts(texts, contexts) @ self.label_prototypes(names, descriptions).T

    def probabilities(self, cosines: np.ndarray) -> np.ndarray:
        scale, bias = float(self.log_scale.detach().exp()), float(self.bias.detach())
        return 1.0 / (1.0 + np.exp(-(scale * cosines + bias)))

    def predict(self, texts: Sequence[str], contexts: Sequence[str | None] | None = None,
                label_names: Sequence[str] | None = None,
                label_descriptions: Sequence[str] | None = None) -> np.ndarray:
        """Probability of each label (columns in the order of `label_names`; default: the training labels)."""
        return self.probabilities(self.cosines(texts, contexts, label_names, label_descriptions))

    def decide(self, texts: Sequence[str], contexts: Sequence[str | None] | None = None,
               label_names: Sequence[str] | None = None, label_descriptions: Sequence[str] | None = None,
               multi_label: bool = True) -> np.ndarray:
        cos = self.cosines(texts, contexts, label_names, label_descriptions)
        if not multi_label:
            out = np.zeros(cos.shape, dtype=np.int8)
            out[np.arange(len(cos)), cos.argmax(1)] = 1
            return out
        return self.rule.apply(cos)

    def _label_set(self, names, descriptions) -> tuple[list[str], list[str]]:
        if names is None:
            return self.labels, self.descriptions
        names = list(names)
        descriptions = list(descriptions) if descriptions is not None else [""] * len(names)
        if len(descriptions) != len(names):
            raise ValueError("give one description per label (an empty string for none)")
        if not names:
            raise ValueError("the label set is empty")
        return names, descriptions

    # ----- files

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """A Hugging Face model folder (encoder + tokenizer), readable by sentence-transformers too, plus
        emoforge_contrastive.json (scale, bias, decision rule, training labels)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        _copy_sentence_transformers_files(self.path, path)
        meta = {"kind": "contrastive", "scale": float(self.log_scale.detach().exp()), "bias": float(self.bias.detach()),
                "rule": asdict(self.rule), "labels": self.labels, "descriptions": self.descriptions,
                "max_length": self.max_length, "label_max_length": self.label_max_length,
                "templates": {"name": TEMPLATES_NAME, "described": TEMPLATES_DESCRIBED}, **(extra or {})}
        (path / CONFIG_FILE).write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> ContrastiveModel:
        path = Path(path)
        meta_file = path / CONFIG_FILE
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        rule = Rule(**meta["rule"]) if meta.get("rule") else None
        return cls(path, scale=meta.get("scale", 20.0), bias=meta.get("bias", -8.0), rule=rule,
                   labels=meta.get("labels"), descriptions=meta.get("descriptions"),
                   max_length=meta.get("max_length", 64), label_max_length=meta.get("label_max_length", 48),
                   device=device)


def _copy_sentence_transformers_files(source: Path, target: Path) -> None:
    if source.resolve() == target.resolve():
        return
    for name in ST_FILES:
        if (source / name).exists():
            shutil.copy2(source / name, target / name)
    pooling = source / "1_Pooling"
    if pooling.is_dir():
        shutil.copytree(pooling, target / "1_Pooling", dirs_exist_ok=True)


def default_base_model() -> str:
    from core.models_setup import ensure_student

    return str(ensure_student())


# --------------------------------------------------------------------------- training


def batches(examples: Sequence[TrainExample], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled batches of similar-length texts (less padding), the same for a given (seed, epoch)."""
    rng = random.Random(seed * 1000 + epoch)
    order = list(range(len(examples)))
    rng.shuffle(order)
    chunk = batch_size * 50
    out = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: len(examples[i].text))
        out += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(out)
    return out


@dataclass
class StepReport:
    step: int
    total_steps: int
    epoch: float
    losses: dict[str, float]
    examples_per_s: float
    scale: float
    bias: float


@dataclass
class TrainResult:
    model: ContrastiveModel
    steps: int
    seconds: float
    examples_per_s: float
    history: list[dict[str, Any]] = field(default_factory=list)
    cancelled: bool = False


def total_steps(n_examples: int, config: ContrastiveConfig) -> int:
    per_epoch = math.ceil(n_examples / config.batch_size)
    return config.max_steps if config.max_steps > 0 else max(1, math.ceil(per_epoch * config.epochs))


def train(examples: Sequence[TrainExample], label_names: Sequence[str], label_descriptions: Sequence[str],
          config: ContrastiveConfig, *, checkpoint_dir: str | Path | None = None,
          on_step: Callable[[StepReport], bool] | None = None,
          on_checkpoint: Callable[[int, Path], None] | None = None) -> TrainResult:
    """Train the encoder. `on_step` is called every `log_every` steps (return False to stop: cancel);
    with `checkpoint_dir`, a checkpoint is written every `checkpoint_every` steps and training resumes
    from the latest one found there."""
    import torch

    if config.mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    if config.mode == "distill":
        examples = [e for e in examples if e.descriptors]  # only what the teacher described can be distilled
    if not examples:
        raise ValueError("no training example" + (" with teacher descriptors" if config.mode == "distill" else ""))
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    base = config.base_model or default_base_model()
    model = ContrastiveModel(base, scale=config.init_scale, bias=config.init_bias, labels=list(label_names),
                             descriptions=list(label_descriptions), max_length=config.max_length,
                             label_max_length=config.label_max_length)
    encoder = model.encoder
    initial = {k: v.detach().clone() for k, v in encoder.state_dict().items()} if config.wise_alpha < 1.0 else None
    _freeze(encoder, config.frozen_layers)
    steps = total_steps(len(examples), config)
    params = [p for p in encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([
        {"params": params, "lr": config.learning_rate, "weight_decay": config.weight_decay},
        {"params": [model.log_scale, model.bias], "lr": config.head_learning_rate, "weight_decay": 0.0},
    ])
    warmup = int(steps * config.warmup_ratio)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (steps - step) / max(1, steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [schedule, lambda _: 1.0])
    step = 0
    if checkpoint_dir is not None:
        step = _resume(Path(checkpoint_dir), model, optimizer, scheduler)
        rng.seed(config.seed * 7919 + step)

    names, descriptions = list(label_names), list(label_descriptions)
    label_words = [label_wordings(n, d) for n, d in zip(names, descriptions)]
    sep = model.tokenizer.sep_token
    per_epoch = math.ceil(len(examples) / config.batch_size)
    history: list[dict[str, Any]] = []
    window: dict[str, float] = {}
    window_steps, window_examples, window_start = 0, 0, time.monotonic()
    started, trained_examples = time.monotonic(), 0
    device_type = str(model.device).split(":")[0]
    bf16 = use_bf16(config.precision, str(model.device))
    encoder.train()
    cancelled = False
    epoch_batches: dict[int, list[list[int]]] = {}
    while step < steps:
        epoch, position = divmod(step, per_epoch)
        if epoch not in epoch_batches:
            epoch_batches = {epoch: batches(examples, config.batch_size, config.seed, epoch)}
        batch = [examples[i] for i in epoch_batches[epoch][position]]
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=bf16):
            if config.mode == "distill":
                losses = distill_losses(model, batch, sep, config, rng)
            else:
                losses = _step_losses(model, batch, names, descriptions, label_words, sep, config, rng)
        loss = losses["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            model.log_scale.clamp_(math.log(1.0), math.log(100.0))
        step += 1
        trained_examples += len(batch)
        window_steps += 1
        window_examples += len(batch)
        for key, value in losses.items():
            window[key] = window.get(key, 0.0) + float(value.detach())
        if step % config.log_every == 0 or step == steps:
            elapsed = time.monotonic() - window_start
            report = StepReport(step, steps, step / per_epoch, {k: v / window_steps for k, v in window.items()},
                                window_examples / elapsed if elapsed > 0 else 0.0,
                                float(model.log_scale.detach().exp()), float(model.bias.detach()))
            history.append({"step": step, "epoch": report.epoch, **report.losses,
                            "examples_per_s": report.examples_per_s})
            window, window_steps, window_examples, window_start = {}, 0, 0, time.monotonic()
            if on_step is not None and on_step(report) is False:
                cancelled = True
        if checkpoint_dir is not None and (step % config.checkpoint_every == 0 or cancelled) and step < steps:
            path = _save_checkpoint(Path(checkpoint_dir), step, model, optimizer, scheduler)
            if on_checkpoint is not None:
                on_checkpoint(step, path)
        if cancelled:
            break
    encoder.eval()
    if initial is not None and not cancelled:
        interpolate(encoder, initial, config.wise_alpha)
    seconds = time.monotonic() - started
    return TrainResult(model, step, seconds, trained_examples / seconds if seconds > 0 else 0.0, history, cancelled)


def interpolate(encoder, base_state: dict, alpha: float) -> None:
    """Encoder weights := alpha * current + (1 - alpha) * base (floating-point tensors only)."""
    import torch

    with torch.no_grad():
        state = encoder.state_dict()
        encoder.load_state_dict({k: alpha * v + (1.0 - alpha) * base_state[k].to(v.device)
                                 if v.is_floating_point() else v for k, v in state.items()})


def _freeze(encoder, frozen_layers: int) -> None:
    embeddings = getattr(encoder, "embeddings", None)
    if embeddings is not None:
        for p in embeddings.parameters():
            p.requires_grad = False
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if layers is not None:
        for layer in list(layers)[:max(0, frozen_layers)]:
            for p in layer.parameters():
                p.requires_grad = False


def distill_losses(model: ContrastiveModel, batch: list[TrainExample], sep: str, config: ContrastiveConfig,
                   rng: random.Random) -> dict:
    """The paper's loss: sigmoid (binary) cross-entropy over the text x descriptor alignment matrix.

    Columns are the distinct phrases of the batch (up to MAX_PHRASES_PER_TEXT of each text, drawn at random);
    cell (i, j) is positive when phrase j is one of text i's descriptors (all of them, not only those drawn),
    negative otherwise. Summed over the matrix and divided by the number of texts, as in SigLIP. Labels are
    never looked at."""
    import torch
    import torch.nn.functional as F

    phrases: list[str] = []
    column: dict[str, int] = {}
    for example in batch:
        own = list(example.descriptors)
        drawn = rng.sample(own, MAX_PHRASES_PER_TEXT) if len(own) > MAX_PHRASES_PER_TEXT else own
        for phrase in drawn:
            if phrase.lower() not in column:
                column[phrase.lower()] = len(phrases)
                phrases.append(phrase)
    positive = torch.zeros(len(batch), len(phrases), device=model.device)
    for row, example in enumerate(batch):
        for phrase in example.descriptors:
            j = column.get(phrase.lower())
            if j is not None:
                positive[row, j] = 1.0
    texts = model._embed([text_input(e.text, e.context, sep) for e in batch], config.max_length)
    described = model._embed(phrases, config.label_max_length)
    logits = model.log_scale.exp() * (texts @ described.T) + model.bias
    signs = 2.0 * positive - 1.0
    loss = -F.logsigmoid(signs * logits).sum() / len(batch)
    return {"loss": loss, "sigmoid": loss.detach(), "positives_per_text": positive.sum(1).mean()}


def _step_losses(model: ContrastiveModel, batch: list[TrainExample], names: list[str], descriptions: list[str],
                 label_words: list[list[str]], sep: str, config: ContrastiveConfig, rng: random.Random) -> dict:
    import torch
    import torch.nn.functional as F

    n_labels = len(names)
    y = torch.zeros(len(batch), n_labels, device=model.device)
    for row, example in enumerate(batch):
        for label in example.labels:
            y[row, label] = 1.0
    texts = model._embed([text_input(e.text, e.context, sep) for e in batch], config.max_length)
    prototypes = model._embed([rng.choice(words) for words in label_words], config.label_max_length)
    cos = texts @ prototypes.T
    scale = model.log_scale.exp()
    logits = scale * cos
    losses: dict[str, Any] = {}
    total = torch.zeros((), device=model.device)
    labelled = y.sum(1) > 0
    if config.softmax_weight > 0 and labelled.any():
        target = y[labelled] / y[labelled].sum(1, keepdim=True)
        losses["softmax"] = -(target * F.log_softmax(logits[labelled], dim=1)).sum(1).mean()
        total = total + config.softmax_weight * losses["softmax"]
    if config.bce_weight > 0:
        losses["bce"] = F.binary_cross_entropy_with_logits(logits + model.bias, y)
        total = total + config.bce_weight * losses["bce"]
    if config.descriptor_weight > 0 and len(batch) > 1:
        chosen = []
        for example in batch:
            options = list(example.descriptors)
            if example.labels:
                options.append(label_descriptors([names[i] for i in example.labels],
                                                 [descriptions[i] for i in example.labels], rng))
            chosen.append(rng.choice(options) if options else None)
        keep = [i for i, d in enumerate(chosen) if d]
        if len(keep) > 1:
            described = model._embed([chosen[i] for i in keep], config.label_max_length)
            sim = scale * (texts[keep] @ described.T)
            keys = [frozenset(batch[i].labels) if batch[i].labels else ("text", i) for i in keep]
            same = torch.tensor([[a == b and i != j for j, b in enumerate(keys)] for i, a in enumerate(keys)],
                                device=model.device)
            sim = sim.masked_fill(same, float("-inf"))  # a text with the same labels is no negative
            target = torch.arange(len(keep), device=model.device)
            losses["descriptor"] = (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target)) / 2
            total = total + config.descriptor_weight * losses["descriptor"]
    losses["loss"] = total
    return losses


def _save_checkpoint(folder: Path, step: int, model: ContrastiveModel, optimizer, scheduler) -> Path:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"step-{step}.partial"
    torch.save({"step": step, "encoder": model.encoder.state_dict(), "log_scale": model.log_scale.detach().cpu(),
                "bias": model.bias.detach().cpu(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict()}, partial)
    final = folder / f"step-{step}.pt"
    os.replace(partial, final)
    for old in folder.glob("step-*.pt"):  # keep the latest only
        if old != final:
            old.unlink(missing_ok=True)
    return final


def latest_checkpoint(folder: Path) -> Path | None:
    found = sorted(folder.glob("step-*.pt"), key=lambda p: int(p.stem.split("-")[1])) if folder.is_dir() else []
    return found[-1] if found else None


def _resume(folder: Path, model: ContrastiveModel, optimizer, scheduler) -> int:
    import torch

    path = latest_checkpoint(folder)
    if path is None:
        return 0
    state = torch.load(path, map_location=model.device, weights_only=False)
    model.encoder.load_state_dict(state["encoder"])
    with torch.no_grad():
        model.log_scale.copy_(state["log_scale"])
        model.bias.copy_(state["bias"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return int(state["step"])


# --------------------------------------------------------------------------- registry and worker job

TRAIN_JOB = "train_contrastive"
CANCEL_POLL_SECONDS = 2.0


def load_predictor(path: str, record: Any = None) -> ContrastiveModel:
    """The registry's loader for kind 'contrastive'."""
    return ContrastiveModel.load(path)


def start_contrastive_run(actor, version_id: int, settings: dict[str, Any] | None = None,
                          model_name: str = "") -> int:
    """Check the settings and the version now, queue the training job; returns the run id.

    The run is a `training_runs` row of kind 'contrastive': the Train page lists, cancels and resumes it
    like a classifier run (core.train.jobs.cancel_run / resume_run)."""
    from sqlalchemy import func, select

    from core.auth import require_admin
    from core.train.jobs import run_dir
    from db.models import DatasetMember, DatasetVersion, RunStatus, TrainingRun
    from db.session import write_session

    actor = require_admin(actor)
    cfg = ContrastiveConfig.from_dict(settings)
    base = cfg.base_model or default_base_model()
    if not Path(base).is_dir():
        raise ValueError(f"the base model folder {base} does not exist")
    if cfg.batch_size < 2 or cfg.learning_rate <= 0 or (cfg.epochs <= 0 and cfg.max_steps <= 0):
        raise ValueError("batch size must be at least 2, the learning rate and the epochs (or steps) positive")
    if not 0.0 < cfg.wise_alpha <= 1.0:
        raise ValueError("the share of trained weights (wise_alpha) must be in (0, 1]")
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
    if cfg.mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    with write_session() as s:
        version = s.get(DatasetVersion, version_id)
        if version is None:
            raise ValueError(f"no dataset version {version_id}")
        counts = dict(s.execute(select(DatasetMember.split, func.count()).where(
            DatasetMember.version_id == version_id).group_by(DatasetMember.split)).tuples().all())
        if not counts.get("train") or not counts.get("dev"):
            raise ValueError(f"dataset version {version.name!r} needs train and dev examples "
                             f"(it has {counts.get('train', 0)} and {counts.get('dev', 0)})")
        stored = cfg.to_dict()
        stored["model_name"] = model_name.strip() or f"contrastive {version.name}"
        run = TrainingRun(kind="contrastive", version_id=version_id, base_model=base, config=stored,
                          status=RunStatus.queued, created_by_id=actor.id)
        s.add(run)
        s.flush()
        run.checkpoint_path = str(run_dir(run.id) / "checkpoints")
        run.job_id = jobs.enqueue(actor, TRAIN_JOB, {"run_id": run.id},
                                  title=f"Train contrastive model (run {run.id})", session=s)
        return run.id


def teacher_descriptors(example_ids: Sequence[int]) -> dict[int, list[str]]:
    """example id -> the teacher's free-text descriptors of it (table `descriptors`)."""
    from sqlalchemy import select

    from db.models import Descriptor
    from db.session import read_session

    found: dict[int, list[str]] = {}
    ids = list(example_ids)
    with read_session() as s:
        for start in range(0, len(ids), 500):
            rows = s.execute(select(Descriptor.example_id, Descriptor.text).where(
                Descriptor.example_id.in_(ids[start:start + 500]), Descriptor.agent.startswith("teacher:"))
                .order_by(Descriptor.id)).tuples()
            for example_id, text in rows:
                if text and text.strip():
                    found.setdefault(example_id, []).append(text.strip())
    return found


def label_descriptions(version_id: int, names: Sequence[str]) -> tuple[list[str], bool]:
    """The descriptions of the version's taxonomy labels, and whether the taxonomy is multi-label."""
    from sqlalchemy import select

    from db.models import DatasetVersion, Label, Taxonomy
    from db.session import read_session

    with read_session() as s:
        version = s.get(DatasetVersion, version_id)
        taxonomy = s.get(Taxonomy, version.taxonomy_id) if version and version.taxonomy_id else None
        described = dict(s.execute(select(Label.name, Label.description).where(
            Label.taxonomy_id == version.taxonomy_id)).tuples().all()) if version else {}
    return [described.get(n, "") or "" for n in names], bool(taxonomy.multi_label) if taxonomy else True


def version_texts(version_id: int, split: str = "train") -> list[tuple[int, str, str | None]]:
    """(example id, text, context) of a version's split: what distill mode trains on. It selects no label,
    no score and no suggestion column, so no human or gold label can reach a distilled model."""
    from sqlalchemy import select

    from core.train.data import first_segment
    from db.models import Character, DatasetMember, Example
    from db.session import read_session

    with read_session() as s:
        rows = s.execute(
            select(Example.id, Example.text, Example.context, Character.name)
            .join(DatasetMember, DatasetMember.example_id == Example.id)
            .outerjoin(Character, Character.id == Example.character_id)
            .where(DatasetMember.version_id == version_id, DatasetMember.split == split)
            .order_by(Example.id)).tuples().all()
    return [(example_id, text, first_segment(context, character)) for example_id, text, context, character in rows]


def distill_examples(version_id: int) -> list[TrainExample]:
    """The train split's texts with their teacher descriptor phrases (texts the teacher did not describe
    are left out: there is nothing to distil from them)."""
    rows = version_texts(version_id, "train")
    described = teacher_descriptors([r[0] for r in rows])
    return [TrainExample(text, (), context, descriptor_phrases(described[example_id]))
            for example_id, text, context in rows if described.get(example_id)]


def version_examples(split, descriptors: dict[int, list[str]]) -> list[TrainExample]:
    contexts = split.contexts or [None] * len(split)
    return [TrainExample(text, tuple(int(j) for j in np.flatnonzero(row)), context,
                         tuple(descriptors.get(example_id, ())))
            for text, row, context, example_id in zip(split.texts, split.targets, contexts, split.ids)]


def _set_run(run_id: int, status, **values: Any) -> None:
    from db.models import TrainingRun
    from db.session import write_session

    with write_session() as s:
        run = s.get(TrainingRun, run_id)
        if run is not None:
            run.status = status
            for key, value in values.items():
                setattr(run, key, value)


@jobs.handler(TRAIN_JOB)
def run_contrastive_job(ctx: jobs.JobContext) -> dict[str, Any]:
    """Train, calibrate the decision rule on dev, evaluate dev / test, save and register the model."""
    from core.train import evaluate, registry
    from core.train.data import load_version
    from core.train.external import EvalSet
    from core.train.jobs import run_dir
    from db.models import RunStatus, TrainingMetric, TrainingRun, utcnow
    from db.session import write_session

    run_id = int(ctx.payload["run_id"])
    done = registry.model_of_run(run_id)
    if done is not None:  # registered by an earlier attempt that died before finishing the job
        _set_run(run_id, RunStatus.succeeded, finished_at=utcnow())
        return {"run_id": run_id, "model_id": done.id}
    with write_session() as s:
        run = s.get(TrainingRun, run_id)
        if run is None:
            raise jobs.JobFailed(f"training run {run_id} was deleted")
        run.status = RunStatus.running
        stored = dict(run.config or {})
        version_id, base = run.version_id, run.base_model
    if version_id is None:
        _set_run(run_id, RunStatus.failed, finished_at=utcnow())
        raise jobs.JobFailed("the dataset version of this run was deleted")
    model_name = stored.pop("model_name", f"contrastive run {run_id}")
    cfg = ContrastiveConfig.from_dict({**stored, "base_model": base})
    folder = run_dir(run_id)
    last_poll = [0.0]

    def on_step(report: StepReport) -> bool:
        values = {**report.losses, "examples_per_s": report.examples_per_s, "scale": report.scale}
        with ctx.batch() as s:
            s.add_all([TrainingMetric(run_id=run_id, step=report.step, epoch=report.epoch, split="train", name=k,
                                      value=float(v)) for k, v in values.items()])
            ctx.advance(s, max(0, report.step - ctx.done), checkpoint={"step": report.step},
                        note=f"step {report.step}/{report.total_steps}: loss {report.losses['loss']:.4g}")
        now = time.monotonic()
        if now - last_poll[0] >= CANCEL_POLL_SECONDS:
            last_poll[0] = now
            return not ctx.cancel_requested()
        return True

    def on_checkpoint(step: int, path: Path) -> None:
        with write_session() as s:
            run = s.get(TrainingRun, run_id)
            if run is not None:
                run.checkpoint_path = str(path)

    try:
        from core.train.data import version_labels

        names = version_labels(version_id)  # the taxonomy's label names: the model's default label set
        descriptions, multi = label_descriptions(version_id, names)
        if cfg.mode == "distill":
            # Texts and teacher descriptors only: the version's labels are read after training, for its figures.
            examples = distill_examples(version_id)
            if not examples:
                raise jobs.JobFailed("no train text of this version has teacher descriptors: run the describe "
                                     "step on its texts first (Generate page, Annotate texts)")
        else:
            labelled = load_version(version_id)
            examples = version_examples(labelled.splits["train"], teacher_descriptors(labelled.splits["train"].ids))
        steps = total_steps(len(examples), cfg)
        described = sum(1 for e in examples if e.descriptors)
        ctx.set_progress(min(ctx.done, steps), steps,
                         note=f"{cfg.mode} mode: {len(examples):,} train texts ({described:,} with teacher "
                              f"descriptors), {steps} steps")
        result = train(examples, names, descriptions, cfg, checkpoint_dir=folder / "checkpoints", on_step=on_step,
                       on_checkpoint=on_checkpoint)
        if result.cancelled:
            _set_run(run_id, RunStatus.cancelled)
            raise jobs.JobCancelled()
        model = result.model
        data = load_version(version_id)  # from here on the labels only measure the trained model
        dev = data.splits.get("dev")
        if dev is None or not len(dev):
            raise jobs.JobFailed("the version has no dev example to evaluate on")
        if cfg.mode == "distill":
            model.rule = Rule(DEFAULT_RULE.kind, DEFAULT_RULE.value)  # fixed a priori: no label tunes it
        else:
            dev_cos = model.cosines(dev.texts, dev.contexts, names, descriptions)
            model.rule = calibrate_rule(dev_cos, dev.targets.astype(np.int8))
        sets = {"dev": dev}
        if data.splits.get("test") is not None and len(data.splits["test"]):
            sets["test"] = data.splits["test"]
        results = {}
        for split_name, split in sets.items():
            evalset = EvalSet(f"{data.name}/{split_name}", names, descriptions, split.texts,
                              (split.targets >= 0.5).astype(np.int8), multi, split.contexts)
            results[split_name] = evaluate.figures(evalset, evaluate.score(model, evalset))
        with ctx.batch() as s:
            for split_name, figs in results.items():
                s.add_all([TrainingMetric(run_id=run_id, step=result.steps, epoch=result.steps / max(1, steps) *
                                          (cfg.epochs if cfg.max_steps <= 0 else 1.0), split=split_name, name=k,
                                          value=float(figs[k])) for k in ("macro_f1", "micro_f1")])
            ctx.advance(s, 0, note="saving the model")
        path = model.save(folder / "model", extra={"run_id": run_id, "version_id": version_id})
    except (jobs.JobCancelled, jobs.LeaseLost, jobs.JobFailed):
        raise
    except Exception:
        _set_run(run_id, RunStatus.failed, finished_at=utcnow())
        raise
    except BaseException:
        _set_run(run_id, RunStatus.queued)  # a stopping worker: the job goes back to the queue
        raise
    metrics = {"dev_macro_f1": results["dev"]["macro_f1"], "dev_micro_f1": results["dev"]["micro_f1"],
               "rule": asdict(model.rule), "steps": result.steps, "train_examples_per_s": round(result.examples_per_s, 2),
               "train_seconds": round(result.seconds, 1), "train_examples": len(examples),
               "train_described": described}
    if "test" in results:
        metrics.update(test_macro_f1=results["test"]["macro_f1"], test_micro_f1=results["test"]["micro_f1"])
    model_id = registry.register_model(
        ctx.actor, "contrastive", registry.free_name(model_name), path, names, {"rule": asdict(model.rule)},
        {**cfg.to_dict(), "version_id": version_id, "version_name": data.name, "descriptions": descriptions},
        metrics, run_id=run_id, dataset_hash=data.content_hash)
    for split_name, figs in results.items():
        evaluate.store_evaluation(ctx.actor, model_id, f"version {version_id}/{split_name}",
                                  {**figs, "source": {"source": "version", "version_id": version_id,
                                                      "split": split_name}}, None)
    _set_run(run_id, RunStatus.succeeded, finished_at=utcnow())
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    return {"run_id": run_id, "model_id": model_id, **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}}

