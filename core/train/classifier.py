"""Multi-label emotion classifier: a Hugging Face encoder, a pooling, a linear head with sigmoid outputs.

Training (`train_classifier`) works on in-memory splits (`Split`), so that the worker job (a dataset
version) and the benchmark (GoEmotions files) run the same code:

- texts are tokenised once, without padding; batches are padded to their own longest text (dynamic
  padding) and drawn from length buckets (examples of similar length together), which on short
  texts cuts the work several times over padding everything to max_length;
- contextual examples go in as a sentence pair (character + context, utterance);
- BCE on hard 0/1 labels or on soft scores, optional positive weighting of rare labels, head bias
  started at the label priors; AdamW, linear warmup then linear decay;
- evaluation on dev every `eval_every` steps (default: each epoch): dev loss and macro-F1 at the best
  global threshold; early stopping on dev macro-F1; the best weights are kept;
- a checkpoint (weights, optimizer, scheduler, position, best so far) is written at every evaluation
  and when a run is cancelled; `resume_from` continues from it exactly where it stopped.

The saved model is a sentence-transformers folder (Transformer -> Pooling -> Dense with a sigmoid),
so `SentenceTransformer(path).encode(texts)` gives the label probabilities outside EmoForge;
`emoforge_classifier.json` adds the label names, thresholds and training configuration.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from core.train import metrics as M

CLASSIFIER_FILE = "emoforge_classifier.json"
POOLINGS = ("mean", "cls")
POS_WEIGHTS = ("none", "sqrt", "linear")
PRECISIONS = ("auto", "fp32", "bf16")
MAX_POS_WEIGHT = 30.0


class TrainingCancelled(Exception):
    """The run was asked to stop; a checkpoint was written first (resume continues from it)."""


@dataclass
class ClassifierConfig:
    """Every default here is the setting `bench.goemotions` measured (test macro-F1 0.519 with MiniLM-L6 on
    GoEmotions): the Train page, the CLI and the bench all start from this one place."""

    base_model: str = ""  # a Hugging Face encoder folder; empty = the bundled all-MiniLM-L6-v2
    max_length: int = 64
    batch_size: int = 32
    learning_rate: float = 1.2e-4
    head_learning_rate: float = 2e-3
    weight_decay: float = 0.01
    epochs: float = 4.0
    warmup_ratio: float = 0.06
    dropout: float = 0.1
    freeze_embeddings: bool = True  # keep the word embeddings fixed (faster steps, and it measured no worse)
    precision: str = "auto"  # auto | fp32 | bf16: bfloat16 autocast for the training passes (weights and
    # evaluation stay float32); auto = bf16 where the hardware has it (CUDA, or a CPU with AVX512-BF16 / AMX)
    pooling: str = "mean"  # mean | cls
    pos_weight: str = "sqrt"  # none | sqrt | linear: weight of positives, (negatives / positives) ** power
    soft_labels: bool = False  # BCE on the frozen scores instead of the 0/1 labels
    eval_every: int = 0  # steps between dev evaluations; 0 = once per epoch
    early_stopping_patience: int = 2  # evaluations without a better dev macro-F1 before stopping; 0 = never
    per_label_thresholds: bool = False
    log_every: int = 20  # steps between logged train losses
    max_steps: int = 0  # 0 = as many as the epochs make
    time_budget_s: float = 0.0  # stop (evaluate, keep the best) once training has taken this long; 0 = no limit
    seed: int = 13
    device: str = "auto"  # auto | cpu | cuda
    eval_batch_size: int = 128

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ClassifierConfig:
        known = {f.name for f in fields(cls)}
        data = dict(data or {})
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown classifier setting(s): {', '.join(sorted(unknown))}")
        config = cls(**data)
        config.check()
        return config

    def check(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
        if self.pos_weight not in POS_WEIGHTS:
            raise ValueError(f"pos_weight must be one of {', '.join(POS_WEIGHTS)}")
        if not (8 <= self.max_length <= 512):
            raise ValueError("max_length must be between 8 and 512 tokens")
        if self.batch_size < 1 or self.epochs <= 0 or self.learning_rate <= 0:
            raise ValueError("batch size, epochs and learning rate must be positive")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Split:
    """One split in memory: texts, optional contexts (sentence pairs), targets (n, labels) in [0, 1]."""

    texts: list[str]
    targets: np.ndarray
    contexts: list[str | None] | None = None
    ids: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def hard(self) -> np.ndarray:
        return (np.asarray(self.targets) >= 0.5).astype(np.int64)

    def subset(self, index: Sequence[int]) -> Split:
        index = list(index)
        return Split([self.texts[i] for i in index], np.asarray(self.targets)[index],
                     [self.contexts[i] for i in index] if self.contexts is not None else None,
                     [self.ids[i] for i in index] if self.ids else [])


class Hooks:
    """What a caller (the worker job, the benchmark, a test) hears from a run. Override what you need."""

    def on_log(self, step: int, epoch: float, split: str, values: dict[str, float]) -> None: ...

    def on_progress(self, step: int, total: int, note: str) -> None: ...

    def should_stop(self) -> bool:
        return False

    def on_checkpoint(self, step: int, path: Path) -> None: ...


# --------------------------------------------------------------------------- the model


def _torch():
    import torch

    return torch


def pick_device(name: str = "auto") -> str:
    torch = _torch()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def use_bf16(precision: str, device: str) -> bool:
    """Whether to train under bfloat16 autocast: asked for, or `auto` on hardware that runs it natively."""
    if precision != "auto":
        return precision == "bf16"
    torch = _torch()
    if device.startswith("cuda"):
        return bool(torch.cuda.is_bf16_supported())
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_base_model() -> str:
    from core.models_setup import ensure_student

    return str(ensure_student())


def build_model(base_model: str, num_labels: int, pooling: str = "mean", dropout: float = 0.1):
    from torch import nn
    from transformers import AutoModel

    class EmotionClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = AutoModel.from_pretrained(base_model)
            hidden = self.encoder.config.hidden_size
            self.pooling = pooling
            self.dropout = nn.Dropout(dropout)
            self.head = nn.Linear(hidden, num_labels)

        def pool(self, input_ids, attention_mask, token_type_ids=None):
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            hidden = self.encoder(**kwargs).last_hidden_state
            if self.pooling == "cls":
                return hidden[:, 0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            return self.head(self.dropout(self.pool(input_ids, attention_mask, token_type_ids)))

    return EmotionClassifier()


class Encoded:
    """Token ids of a split, unpadded, and the collation of a batch of them."""

    def __init__(self, tokenizer, texts: list[str], contexts: list[str | None] | None, max_length: int):
        self.tokenizer = tokenizer
        n = len(texts)
        self.input_ids: list[list[int]] = [[] for _ in range(n)]
        self.token_type_ids: list[list[int]] | None = None
        single = [i for i in range(n) if not (contexts and contexts[i])]
        paired = [i for i in range(n) if contexts and contexts[i]]
        wants_types = "token_type_ids" in tokenizer.model_input_names
        if wants_types:
            self.token_type_ids = [[] for _ in range(n)]
        if single:
            enc = tokenizer([texts[i] for i in single], truncation=True, max_length=max_length)
            self._store(single, enc)
        if paired:
            # (character + context, utterance): truncate the context first, the utterance is what is labelled.
            enc = tokenizer([contexts[i] for i in paired], [texts[i] for i in paired],
                            truncation="only_first" if max_length >= 32 else True, max_length=max_length)
            self._store(paired, enc)
        self.lengths = np.array([len(x) for x in self.input_ids])

    def _store(self, index: list[int], enc) -> None:
        for j, i in enumerate(index):
            self.input_ids[i] = enc["input_ids"][j]
            if self.token_type_ids is not None:
                self.token_type_ids[i] = enc.get("token_type_ids", [[0] * len(enc["input_ids"][j])])[j]

    def collate(self, index: Sequence[int], device: str) -> dict[str, Any]:
        torch = _torch()
        width = int(max(self.lengths[i] for i in index))
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(index), width), pad, dtype=torch.long)
        mask = torch.zeros((len(index), width), dtype=torch.long)
        types = torch.zeros((len(index), width), dtype=torch.long) if self.token_type_ids is not None else None
        for row, i in enumerate(index):
            n = self.lengths[i]
            ids[row, :n] = torch.tensor(self.input_ids[i])
            mask[row, :n] = 1
            if types is not None:
                types[row, :n] = torch.tensor(self.token_type_ids[i])
        batch = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
        if types is not None:
            batch["token_type_ids"] = types.to(device)
        return batch


def length_batches(lengths: np.ndarray, batch_size: int, seed: int, bucket: int = 50) -> list[list[int]]:
    """Shuffled batches of similar-length examples: shuffle, sort chunks of bucket*batch_size by length,
    cut into batches, shuffle the batches. Deterministic for a seed (resume replays the same order)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    batches: list[list[int]] = []
    chunk = batch_size * bucket
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i:i + batch_size].tolist() for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def _pos_weight(targets: np.ndarray, mode: str) -> np.ndarray | None:
    if mode == "none":
        return None
    pos = np.asarray(targets, dtype=np.float64).sum(0)
    neg = len(targets) - pos
    ratio = np.where(pos > 0, neg / np.maximum(pos, 1e-9), 1.0)
    power = 0.5 if mode == "sqrt" else 1.0
    return np.clip(ratio ** power, 1.0, MAX_POS_WEIGHT)


def predict_logits(model, encoded: Encoded, device: str, batch_size: int = 128) -> np.ndarray:
    """Logits in the original order; batches sorted by length so that padding is minimal."""
    torch = _torch()
    model.eval()
    order = np.argsort(encoded.lengths, kind="stable")
    out = np.zeros((len(order), model.head.out_features), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            out[index] = model(**encoded.collate(index, device)).float().cpu().numpy()
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40, 40)))


def bce(logits: np.ndarray, targets: np.ndarray, pos_weight: np.ndarray | None = None) -> float:
    """Mean binary cross-entropy of logits, positives weighted like torch's BCEWithLogitsLoss(pos_weight)."""
    x, y = np.asarray(logits, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    log_sig = -(np.maximum(-x, 0) + np.log1p(np.exp(-np.abs(x))))  # log sigmoid(x)
    log_one_minus = log_sig - x  # log(1 - sigmoid(x))
    w = 1.0 if pos_weight is None else np.asarray(pos_weight, dtype=np.float64)
    return float(np.mean(-(w * y * log_sig + (1 - y) * log_one_minus)))


# --------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    path: str  # the saved model folder
    labels: list[str]
    threshold: float
    per_label_thresholds: dict[str, float] | None
    metrics: dict[str, Any]
    steps: int
    epochs_done: float
    train_examples_per_s: float
    seconds: float
    stopped_early: bool
    history: list[dict[str, Any]]
    dev_probs: Any = None  # (dev examples, labels) probabilities of the saved model


def train_classifier(labels: list[str], train: Split, dev: Split, out_dir: str | Path,
                     config: ClassifierConfig | None = None, hooks: Hooks | None = None,
                     test: Split | None = None, resume: bool = True,
                     initial_head: tuple[np.ndarray, np.ndarray] | None = None) -> TrainResult:
    """Train, keep the best dev macro-F1 weights, tune the threshold on dev, save to out_dir/model.

    out_dir also holds `checkpoint.pt` (the last checkpoint) and `best.pt` (the best weights so far);
    with `resume` a run finding a checkpoint there continues from it. `initial_head` (weight, bias) starts the
    head from a registered model's (adaptation, see `parent_head`) instead of zero weights and the label priors.
    """
    torch = _torch()
    from transformers import AutoTokenizer, get_linear_schedule_with_warmup

    config = config or ClassifierConfig()
    config.check()
    hooks = hooks or Hooks()
    if len(train) == 0 or len(dev) == 0:
        raise ValueError("training needs examples in both the train and the dev split")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = config.base_model or default_base_model()
    device = pick_device(config.device)
    bf16 = use_bf16(config.precision, device)
    _seed_everything(config.seed)

    tokenizer = AutoTokenizer.from_pretrained(base)
    enc_train = Encoded(tokenizer, train.texts, train.contexts, config.max_length)
    enc_dev = Encoded(tokenizer, dev.texts, dev.contexts, config.max_length)
    targets = np.asarray(train.targets if config.soft_labels else train.hard(), dtype=np.float32)
    dev_hard = dev.hard()

    model = build_model(base, len(labels), config.pooling, config.dropout).to(device)
    prior = np.clip(train.hard().mean(0), 1e-4, 1 - 1e-4)
    with torch.no_grad():
        if initial_head is not None:
            model.head.weight.copy_(torch.as_tensor(np.asarray(initial_head[0]), dtype=torch.float32))
            model.head.bias.copy_(torch.as_tensor(np.asarray(initial_head[1]), dtype=torch.float32))
        else:
            model.head.bias.copy_(torch.tensor(np.log(prior / (1 - prior)), dtype=torch.float32))
    pos_weight = _pos_weight(train.hard(), config.pos_weight)
    loss_fn = torch.nn.BCEWithLogitsLoss(
        pos_weight=torch.tensor(pos_weight, dtype=torch.float32, device=device) if pos_weight is not None else None)

    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = math.ceil(steps_per_epoch * config.epochs)
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    eval_every = config.eval_every or steps_per_epoch
    decay, no_decay = [], []
    for name, param in model.encoder.named_parameters():
        if config.freeze_embeddings and "word_embeddings" in name:
            param.requires_grad_(False)  # half of MiniLM's weights: no gradient, no optimizer state
            continue
        (no_decay if param.ndim < 2 or "LayerNorm" in name or "bias" in name else decay).append(param)
    optimizer = torch.optim.AdamW([
        {"params": decay, "lr": config.learning_rate, "weight_decay": config.weight_decay},
        {"params": no_decay, "lr": config.learning_rate, "weight_decay": 0.0},
        {"params": list(model.head.parameters()), "lr": config.head_learning_rate, "weight_decay": 0.0},
    ], fused=True)  # one fused kernel per step instead of a loop over tensors (CPU and CUDA)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)

    state = {"step": 0, "best_f1": -1.0, "best_step": 0, "bad_evals": 0, "history": [], "seconds": 0.0,
             "examples": 0}
    checkpoint_path, best_path = out / "checkpoint.pt", out / "best.pt"
    if resume and checkpoint_path.exists():
        saved = torch.load(checkpoint_path, map_location=device, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["state"]
        torch.set_rng_state(saved["rng"])
        hooks.on_progress(state["step"], total_steps, f"resumed at step {state['step']}")
    else:
        best_path.unlink(missing_ok=True)
        hooks.on_progress(0, total_steps, f"{len(train):,} examples, {total_steps:,} steps")

    def save_checkpoint() -> None:
        tmp = checkpoint_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "state": state, "config": config.to_dict(),
                    "rng": torch.get_rng_state()}, tmp)
        os.replace(tmp, checkpoint_path)
        hooks.on_checkpoint(state["step"], checkpoint_path)

    def evaluate() -> bool:
        """Dev loss and macro-F1; True when training should stop early."""
        logits = predict_logits(model, enc_dev, device, config.eval_batch_size)
        probs = sigmoid(logits)
        threshold, _ = M.sweep_global_threshold(dev_hard, probs)
        scores = M.f1_summary(dev_hard, M.binarize(probs, threshold))
        values = {"loss": bce(logits, dev.targets if config.soft_labels else dev_hard, pos_weight),
                  "macro_f1": scores["macro_f1"], "micro_f1": scores["micro_f1"], "threshold": threshold}
        epoch = state["step"] / steps_per_epoch
        state["history"].append({"step": state["step"], "epoch": epoch, **values})
        hooks.on_log(state["step"], epoch, "dev", values)
        improved = values["macro_f1"] > state["best_f1"]
        if improved:
            state["best_f1"], state["best_step"], state["bad_evals"] = values["macro_f1"], state["step"], 0
            tmp = best_path.with_suffix(".tmp")
            torch.save(model.state_dict(), tmp)
            os.replace(tmp, best_path)
        else:
            state["bad_evals"] += 1
        model.train()
        return bool(config.early_stopping_patience) and state["bad_evals"] >= config.early_stopping_patience

    if state["step"] == 0 and not state["history"]:
        evaluate()  # the starting point of the dev curves (and the floor the best model must beat)
    model.train()
    stopped_early = False
    running, running_n = 0.0, 0
    started = time.monotonic()
    while state["step"] < total_steps and not stopped_early:
        epoch_index = state["step"] // steps_per_epoch
        batches = length_batches(enc_train.lengths, config.batch_size, config.seed + epoch_index)
        for index in batches[state["step"] - epoch_index * steps_per_epoch:]:
            if state["step"] >= total_steps:
                break
            if hooks.should_stop():
                state["seconds"] += time.monotonic() - started
                save_checkpoint()
                raise TrainingCancelled(f"stopped at step {state['step']}; resume continues from there")
            batch = enc_train.collate(index, device)
            with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
                logits = model(**batch)
            loss = loss_fn(logits.float(), torch.tensor(targets[index], device=device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            state["examples"] += len(index)
            running, running_n = running + float(loss.detach()), running_n + 1
            if state["step"] % config.log_every == 0 or state["step"] == total_steps:
                epoch = state["step"] / steps_per_epoch
                hooks.on_log(state["step"], epoch, "train",
                             {"loss": running / running_n, "learning_rate": scheduler.get_last_lr()[0]})
                running, running_n = 0.0, 0
                hooks.on_progress(state["step"], total_steps, f"epoch {epoch:.2f}")
            out_of_time = bool(config.time_budget_s) and (
                state["seconds"] + time.monotonic() - started >= config.time_budget_s)
            if out_of_time:
                state["out_of_time"] = True
            if state["step"] % eval_every == 0 or state["step"] == total_steps or out_of_time:
                state["seconds"] += time.monotonic() - started
                stopped_early = evaluate()
                save_checkpoint()
                started = time.monotonic()
                if stopped_early or out_of_time:
                    stopped_early = True
                    break
    state["seconds"] += time.monotonic() - started
    if not state["history"] or state["history"][-1]["step"] != state["step"]:
        evaluate()
        save_checkpoint()

    # The best weights, the threshold tuned on dev, the figures, the saved folder.
    model.load_state_dict(torch.load(best_path, map_location=device))
    dev_probs = sigmoid(predict_logits(model, enc_dev, device, config.eval_batch_size))
    test_hard = test_probs = None
    if test is not None and len(test):
        enc_test = Encoded(tokenizer, test.texts, test.contexts, config.max_length)
        test_probs = sigmoid(predict_logits(model, enc_test, device, config.eval_batch_size))
        test_hard = test.hard()
    tuned = M.tune_and_evaluate(dev_hard, dev_probs, test_hard, test_probs, labels,
                                per_label=config.per_label_thresholds)
    metrics = _summary(tuned)
    per_label = tuned.get("per_label_thresholds")
    thresholds = {"global": tuned["threshold"], **({"per_label": per_label} if per_label else {})}
    path = save_classifier(model, tokenizer, out / "model", labels, thresholds, config, metrics)
    train_seconds = state["seconds"]
    return TrainResult(
        path=str(path), labels=list(labels), threshold=tuned["threshold"], per_label_thresholds=per_label,
        metrics={**metrics, "details": tuned}, steps=state["step"], epochs_done=state["step"] / steps_per_epoch,
        train_examples_per_s=state["examples"] / train_seconds if train_seconds else 0.0, seconds=train_seconds,
        stopped_early=stopped_early, history=state["history"], dev_probs=dev_probs)


def _summary(tuned: dict) -> dict[str, Any]:
    out: dict[str, Any] = {"threshold": tuned["threshold"], "dev_macro_f1": tuned["dev"]["macro_f1"],
                           "dev_micro_f1": tuned["dev"]["micro_f1"]}
    if tuned.get("test"):
        out.update(test_macro_f1=tuned["test"]["macro_f1"], test_micro_f1=tuned["test"]["micro_f1"])
    if tuned.get("dev_per_label_thresholds"):
        out["dev_macro_f1_per_label_thresholds"] = tuned["dev_per_label_thresholds"]["macro_f1"]
    if tuned.get("test_per_label_thresholds"):
        out["test_macro_f1_per_label_thresholds"] = tuned["test_per_label_thresholds"]["macro_f1"]
    return out


def _seed_everything(seed: int) -> None:
    torch = _torch()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- saving and loading


def save_classifier(model, tokenizer, path: str | Path, labels: list[str], thresholds: dict[str, Any],
                    config: ClassifierConfig, metrics: dict[str, Any] | None = None) -> Path:
    """A sentence-transformers folder: Transformer (the encoder) -> Pooling -> Dense(sigmoid) head."""
    torch = _torch()
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Dense
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    encoder = model.encoder
    encoder.config.id2label = dict(enumerate(labels))
    encoder.config.label2id = {name: i for i, name in enumerate(labels)}
    encoder.save_pretrained(path)
    tokenizer.save_pretrained(path)
    transformer = Transformer(str(path), max_seq_length=config.max_length)
    hidden = encoder.config.hidden_size
    pooling = Pooling(hidden, pooling_mode=config.pooling)
    dense = Dense(hidden, len(labels), bias=True, activation_function=torch.nn.Sigmoid())
    with torch.no_grad():
        dense.linear.weight.copy_(model.head.weight.detach().cpu())
        dense.linear.bias.copy_(model.head.bias.detach().cpu())
    SentenceTransformer(modules=[transformer, pooling, dense], device="cpu").save(str(path))
    (path / CLASSIFIER_FILE).write_text(json.dumps({
        "labels": list(labels), "thresholds": thresholds, "pooling": config.pooling, "max_length": config.max_length,
        "config": config.to_dict(), "metrics": metrics or {}}, indent=2, default=float))
    return path


class ClassifierPredictor:
    """Probabilities of a saved classifier's labels for texts (and optional contexts)."""

    kind = "classifier"

    def __init__(self, path: str | Path, device: str = "auto"):
        torch = _torch()
        from safetensors.torch import load_file
        from transformers import AutoTokenizer

        path = Path(path)
        info = json.loads((path / CLASSIFIER_FILE).read_text())
        self.path = path
        self.labels: list[str] = list(info["labels"])
        self.thresholds: dict[str, Any] = dict(info.get("thresholds") or {})
        self.max_length = int(info.get("max_length", 64))
        self.device = pick_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = build_model(str(path), len(self.labels), info.get("pooling", "mean"), 0.0)
        head = load_file(str(path / "2_Dense" / "model.safetensors"))
        with torch.no_grad():
            self.model.head.weight.copy_(head["linear.weight"])
            self.model.head.bias.copy_(head["linear.bias"])
        self.model.to(self.device).eval()

    @property
    def threshold(self) -> float:
        return float(self.thresholds.get("global", 0.5))

    def predict(self, texts: Sequence[str], contexts: Sequence[str | None] | None = None,
                label_names: Sequence[str] | None = None, label_descriptions: Sequence[str] | None = None,
                batch_size: int = 128) -> np.ndarray:
        """(len(texts), labels) probabilities; `label_names` picks and orders a subset of the model's labels."""
        columns = None
        if label_names is not None:
            missing = [n for n in label_names if n not in self.labels]
            if missing:
                raise ValueError(f"this classifier does not know the label(s) {', '.join(missing)}; "
                                 "only a contrastive model predicts over any label set")
            columns = [self.labels.index(n) for n in label_names]
        if not len(texts):
            return np.zeros((0, len(columns) if columns is not None else len(self.labels)), dtype=np.float32)
        encoded = Encoded(self.tokenizer, list(texts), list(contexts) if contexts is not None else None,
                          self.max_length)
        probs = sigmoid(predict_logits(self.model, encoded, self.device, batch_size))
        return probs[:, columns] if columns is not None else probs

    def predicted_labels(self, probs: np.ndarray) -> list[list[str]]:
        per_label = self.thresholds.get("per_label")
        cut = [per_label.get(n, self.threshold) for n in self.labels] if per_label else self.threshold
        return [[self.labels[j] for j in np.flatnonzero(row)] for row in M.binarize(probs, cut)]


def load_predictor(path: str, record: Any = None) -> ClassifierPredictor:
    """The registry's loader for kind 'classifier'."""
    return ClassifierPredictor(path)


def parent_head(path: str | Path, labels: Sequence[str]) -> tuple[tuple[np.ndarray, np.ndarray] | None, str]:
    """The head of a saved classifier, its rows in the order of `labels`, when it has exactly these labels:
    ((weight, bias), note); else (None, note saying why a new head is trained)."""
    from safetensors.numpy import load_file

    path = Path(path)
    info_file = path / CLASSIFIER_FILE
    if not info_file.exists():
        return None, "the parent is not a classifier: its encoder is kept and a new head is trained"
    parent_labels = list(json.loads(info_file.read_text())["labels"])
    if sorted(parent_labels) != sorted(labels):
        only_parent = sorted(set(parent_labels) - set(labels))
        only_here = sorted(set(labels) - set(parent_labels))
        return None, ("the label sets differ (only the parent's: " + (", ".join(only_parent) or "none")
                      + "; only this version's: " + (", ".join(only_here) or "none")
                      + "): its encoder is kept and a new head is trained")
    head = load_file(str(path / "2_Dense" / "model.safetensors"))
    order = [parent_labels.index(n) for n in labels]
    return (head["linear.weight"][order], head["linear.bias"][order]), \
        f"the label sets match: its encoder and its head ({len(labels)} labels) are kept"
