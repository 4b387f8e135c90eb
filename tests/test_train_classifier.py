"""Classifier training (issue 7): metrics, a few real training steps, save / reload / export, the worker
job with cancel and resume, label-issue scores back into Curate and Review, and the CLI.

Training runs the real bundled all-MiniLM-L6-v2 on tiny data and a few steps, so each test takes seconds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import select

from core import cli, jobs, worker
from core.curate.filters import CurationFilter
from core.datasets import versions
from core.train import classifier as C
from core.train import jobs as train_jobs
from core.train import label_issues, metrics, registry
from db.models import JobStatus, Signal
from db.session import read_session
from tests.conftest import shared_data
from tests.curate_support import add_example, make_stories

TINY = {"max_length": 32, "batch_size": 8, "log_every": 1, "seed": 3}


# --------------------------------------------------------------------------- metrics


def test_global_threshold_sweep_picks_the_best_threshold_on_a_hand_made_case():
    # Label 0: positives at 0.42 and 0.9, negatives at 0.38 and 0.1 -> any t in (0.38, 0.42] is perfect.
    # Label 1: positive at 0.7, negatives at 0.3 and 0.45 and 0.2 -> any t in (0.45, 0.7] is perfect.
    y = np.array([[1, 0], [1, 1], [0, 0], [0, 0]])
    p = np.array([[0.42, 0.3], [0.9, 0.7], [0.38, 0.45], [0.1, 0.2]])
    best, table = metrics.sweep_global_threshold(y, p)
    assert [row["threshold"] for row in table] == [round(0.05 * i, 2) for i in range(1, 20)]
    # No single threshold is perfect for both: 0.40 gets label 0 right and predicts 0.45 for label 1 (F1 2/3),
    # 0.50 gets label 1 right but misses 0.42 (F1 2/3 for label 0); the lowest of the tied best wins.
    by_t = {row["threshold"]: row["macro_f1"] for row in table}
    assert by_t[0.4] == pytest.approx((1 + 2 / 3) / 2) and by_t[0.5] == pytest.approx((2 / 3 + 1) / 2)
    assert best == 0.4 and by_t[best] == max(by_t.values())
    # The per-label sweep finds each label's perfect threshold (the lowest in its perfect interval).
    assert metrics.sweep_per_label_thresholds(y, p) == [0.4, 0.5]
    report = metrics.evaluate_probs(y, p, [0.4, 0.5], ["a", "b"])
    assert report["macro_f1"] == 1.0 and [r["support"] for r in report["per_label"]] == [2, 1]
    # A label without positives keeps the fallback threshold instead of the top of the grid.
    assert metrics.sweep_per_label_thresholds(np.array([[1, 0], [0, 0]]), np.array([[0.8, 0.1], [0.2, 0.3]]),
                                              fallback=0.33)[1] == 0.33


def test_tune_and_evaluate_reports_dev_and_test_at_the_dev_threshold():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 4)) < 0.3).astype(int)
    p = np.clip(y * 0.35 + rng.random((200, 4)) * 0.6, 0, 1)
    out = metrics.tune_and_evaluate(y[:100], p[:100], y[100:], p[100:], list("abcd"), per_label=True)
    t = out["threshold"]
    assert out["test"]["macro_f1"] == pytest.approx(metrics.f1_summary(y[100:], p[100:] >= t)["macro_f1"])
    assert set(out["per_label_thresholds"]) == set("abcd")
    assert out["dev_per_label_thresholds"]["macro_f1"] >= out["dev"]["macro_f1"] - 1e-12


# --------------------------------------------------------------------------- training on real text


def goemotions_split(name: str, n: int, seed: int = 0) -> tuple[list[str], C.Split]:
    from core.datasets.readers import parse_goemotions
    from core.taxonomy import GOEMOTIONS_LABELS

    path = shared_data("goemotions", f"{name}.tsv")
    labels = [n for n, _ in GOEMOTIONS_LABELS]
    records = parse_goemotions(path.name, path.read_text(encoding="utf-8"))
    pick = np.random.default_rng(seed).permutation(len(records))[:n]
    y = np.zeros((n, len(labels)), dtype=np.float32)
    for row, i in enumerate(pick):
        for label in records[i].labels:
            y[row, labels.index(label)] = 1.0
    return labels, C.Split([records[i].text for i in pick], y)


class Recorder(C.Hooks):
    def __init__(self, stop_at: int | None = None):
        self.logs: list[tuple[int, str, dict]] = []
        self.stop_at = stop_at
        self.step = 0

    def on_log(self, step, epoch, split, values):
        self.step = step
        self.logs.append((step, split, dict(values)))

    def should_stop(self):
        return self.stop_at is not None and self.step >= self.stop_at

    def dev(self, name: str) -> list[float]:
        return [v[name] for _, split, v in self.logs if split == "dev"]


def test_a_few_steps_on_200_examples_lower_the_dev_loss_and_reload_gives_identical_predictions(tmp_path):
    labels, train = goemotions_split("train", 200)
    _, dev = goemotions_split("dev", 100)
    hooks = Recorder()
    cfg = C.ClassifierConfig(**{**TINY, "batch_size": 16}, epochs=2, eval_every=13, learning_rate=1e-4,
                             early_stopping_patience=0)
    result = C.train_classifier(labels, train, dev, tmp_path / "run", cfg, hooks)
    losses = hooks.dev("loss")
    assert [s for s, split, _ in hooks.logs if split == "dev"] == [0, 13, 26]  # step 0, then every 13 (an epoch)
    assert losses[-1] < losses[0] - 0.01, losses
    assert result.steps == 26 and 0.05 <= result.threshold <= 0.95
    assert {"dev_macro_f1", "dev_micro_f1", "threshold"} <= set(result.metrics)

    # The saved folder gives back exactly what the trained model predicted on dev.
    predictor = C.ClassifierPredictor(result.path)
    again = predictor.predict(dev.texts)
    assert again.shape == (100, 28)
    np.testing.assert_allclose(again, result.dev_probs, atol=1e-5)
    # A subset of labels in a chosen order, and a clear error for a label the classifier does not know.
    np.testing.assert_allclose(predictor.predict(dev.texts[:3], label_names=["joy", "anger"]),
                               again[:3][:, [labels.index("joy"), labels.index("anger")]], atol=1e-6)
    with pytest.raises(ValueError, match="does not know"):
        predictor.predict(["hi"], label_names=["schadenfreude"])

    # Outside EmoForge the folder is a sentence-transformers model whose output is the probabilities.
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(result.path), device="cpu")
    np.testing.assert_allclose(st.encode(dev.texts[:8], convert_to_numpy=True), again[:8], atol=1e-5)


def test_cancel_writes_a_checkpoint_and_resume_continues_exactly(tmp_path):
    labels = ["joy", "anger", "fear"]
    texts = [f"{w} number {i}" for i in range(12) for w in ("happy", "angry", "scared")]
    y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]] * 12, dtype=np.float32)
    train, dev = C.Split(texts[:30], y[:30]), C.Split(texts[30:], y[30:])
    cfg = C.ClassifierConfig(**TINY, max_steps=8, eval_every=4, early_stopping_patience=0)

    straight = C.train_classifier(labels, train, dev, tmp_path / "straight", cfg, Recorder())
    with pytest.raises(C.TrainingCancelled):
        C.train_classifier(labels, train, dev, tmp_path / "stopped", cfg, Recorder(stop_at=3))
    saved = __import__("torch").load(tmp_path / "stopped" / "checkpoint.pt", weights_only=False)
    assert saved["state"]["step"] == 3
    resumed_hooks = Recorder()
    resumed = C.train_classifier(labels, train, dev, tmp_path / "stopped", cfg, resumed_hooks)
    assert [s for s, split, _ in resumed_hooks.logs if split == "train"] == [4, 5, 6, 7, 8]
    assert resumed.steps == straight.steps == 8
    np.testing.assert_allclose(resumed.dev_probs, straight.dev_probs, atol=1e-5)


# --------------------------------------------------------------------------- the worker job


def small_version(admin, n: int = 48) -> int:
    stories = make_stories(12)
    words = {"joy": "wonderful happy day", "anger": "furious and angry", "sadness": "so sad and lonely"}
    for i in range(n):
        label = list(words)[i % 3]
        add_example(f"{words[label]} {i}", {label: 0.9}, story_id=stories[i % 12])
    return versions.freeze(admin, "tiny", ratios={"train": 0.6, "dev": 0.2, "test": 0.2}).id


def test_training_job_streams_metrics_cancels_resumes_and_registers_the_model(admin, monkeypatch, tmp_path):
    version_id = small_version(admin)
    monkeypatch.setattr(train_jobs, "CANCEL_POLL_SECONDS", 0.0)
    run_id = train_jobs.start_classifier_run(admin, version_id, {**TINY, "max_steps": 6, "eval_every": 3},
                                             model_name="tiny model")
    run = train_jobs.get_run(admin, run_id)
    assert (run.status, run.job_status) == ("queued", "queued")

    # Cancel from "the page" once the job has logged step 2: the handler checkpoints and stops.
    original = train_jobs.JobHooks.on_log

    def on_log(self, step, epoch, split, values):
        original(self, step, epoch, split, values)
        if split == "train" and step == 2 and not self.ctx.cancel_requested():
            train_jobs.cancel_run(admin, run_id)

    monkeypatch.setattr(train_jobs.JobHooks, "on_log", on_log)
    assert worker.serve(once=True) == 1
    run = train_jobs.get_run(admin, run_id)
    assert (run.status, run.job_status, run.has_checkpoint, run.can_resume) == ("cancelled", "cancelled", True, True)
    queued = train_jobs.start_classifier_run(admin, version_id, TINY)
    with pytest.raises(ValueError, match="only a cancelled or failed run"):
        train_jobs.resume_run(admin, queued)
    train_jobs.cancel_run(admin, queued)  # a queued run is cancelled at once
    assert train_jobs.get_run(admin, queued).status == "cancelled"

    train_jobs.resume_run(admin, run_id)
    assert worker.serve(once=True) == 1
    run = train_jobs.get_run(admin, run_id)
    assert (run.status, run.job_status) == ("succeeded", "succeeded"), run.error
    rows = train_jobs.run_metrics(admin, run_id)
    train_steps = [r["step"] for r in rows if r["split"] == "train" and r["name"] == "loss"]
    assert train_steps == [1, 2, 3, 4, 5, 6]  # each step once, across the cancel
    assert [r["step"] for r in rows if r["split"] == "dev" and r["name"] == "macro_f1"] == [0, 3, 6]

    model = registry.get_model(run.model_id)
    assert model.name == "tiny model" and model.kind == "classifier" and model.run_id == run_id
    assert model.dataset_hash == versions.get_version(admin, version_id).content_hash
    assert model.metrics["steps"] == 6 and "test_macro_f1" in model.metrics
    assert model.labels[:3] == ["admiration", "amusement", "anger"] and len(model.labels) == 28
    probs = registry.load_predictor(model.id).predict(["furious and angry 99"])
    assert probs.shape == (1, 28) and np.all((probs >= 0) & (probs <= 1))

    # A worker that died after registering but before ending its job: the retry registers nothing twice.
    from core import jobs

    jobs.enqueue(admin, train_jobs.TRAIN_JOB, {"run_id": run_id})
    assert worker.serve(once=True) == 1
    assert [m.id for m in registry.list_models("classifier")] == [model.id]
    assert train_jobs.get_run(admin, run_id).status == "succeeded"

    folder = registry.export_model(admin, model.id, tmp_path / "export")
    card = json.loads((folder / registry.CARD_FILE).read_text())
    assert card["dataset_hash"] == model.dataset_hash and card["labels"] == model.labels
    assert (folder / "config.json").exists() and (folder / "2_Dense" / "config.json").exists()
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(folder).id2label[2] == "anger"
    name, data = registry.export_zip(admin, model.id)
    assert name.endswith(".zip") and len(data) > 1000


def test_training_rejects_bad_settings_and_versions_without_dev(admin, annotator):
    version_id = small_version(admin, 12)
    with pytest.raises(ValueError, match="unknown classifier setting"):
        train_jobs.start_classifier_run(admin, version_id, {"epochz": 2})
    with pytest.raises(ValueError, match="pooling"):
        train_jobs.start_classifier_run(admin, version_id, {"pooling": "max"})
    with pytest.raises(Exception, match="Only an admin"):
        train_jobs.start_classifier_run(annotator, version_id, {})
    only_train = versions.freeze(admin, "train only", ratios={"train": 1.0}, seed=99)
    with pytest.raises(ValueError, match="needs train and dev"):
        train_jobs.start_classifier_run(admin, only_train.id, {})


# --------------------------------------------------------------------------- label issues


def test_issue_scores_put_the_mislabelled_example_first():
    targets = np.array([[1, 0], [1, 0], [0, 1], [1, 0], [0, 1]], dtype=np.float32)
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.05, 0.95], [0.2, 0.85]])  # row 3 says joy, looks anger
    values, _ = label_issues.issue_scores(targets, probs)
    assert int(np.argmax(values)) == 3 and np.all((values >= 0) & (values <= 1))


def test_label_issue_job_scores_every_member_for_curate_and_review(admin, annotator):
    version_id = small_version(admin, 24)
    job_id = label_issues.enqueue_label_issues(admin, version_id, {"folds": 2, "max_steps": 2, "max_length": 32,
                                                                   "batch_size": 8})
    assert worker.serve(once=True) == 1
    job = jobs.get_job(admin, job_id)
    assert job.status == JobStatus.succeeded, job.error
    assert job.result["scored"] == 24
    with read_session() as s:
        signals = {r.example_id: r for r in s.scalars(select(Signal).where(Signal.kind == label_issues.LABEL_ISSUE))}
    assert len(signals) == 24
    some = next(iter(signals.values()))
    assert 0.0 <= some.value <= 1.0 and some.data["version_id"] == version_id
    assert some.data["given"] == some.data["teacher"] and len(some.data["student_top"]) == 3

    # Curate: the existing signal filter and sort take it as they are.
    from core.curate import browse

    worst = sorted(signals.values(), key=lambda r: (-r.value, r.example_id))
    rows, total = browse.search(admin, CurationFilter(signal_kind="label_issue", signal_min=worst[4].value),
                                sort="signal")
    assert [row.id for row in rows][:5] == [r.example_id for r in worst[:5]] and total >= 5
    # Review: a campaign over the top N.
    campaign = label_issues.create_issue_campaign(admin, "check the student", [annotator.id], top_n=5)
    assert campaign.item_count == 5 and campaign.selection["top_signal"] == "label_issue"
    assert [row["example_id"] for row in label_issues.top_issues(admin, 5)] == [r.example_id for r in worst[:5]]


# --------------------------------------------------------------------------- CLI


def test_cli_queues_training_and_lists_models(admin, monkeypatch, capsys):
    version_id = small_version(admin, 12)
    monkeypatch.setenv("EMOFORGE_PASSWORD", "admin-pass-123")
    assert cli.main(["--user", "admin", "train", str(version_id), "--epochs", "1", "--lr", "5e-5",
                     "--name", "from cli"]) == 0
    assert "training run" in capsys.readouterr().out
    run = train_jobs.list_runs(admin)[0]
    assert run.config["learning_rate"] == 5e-5 and run.config["model_name"] == "from cli"
    with pytest.raises(SystemExit):  # argparse refuses an unknown pooling
        cli.main(["--user", "admin", "train", str(version_id), "--pooling", "max"])
    capsys.readouterr()
    registry.register_model(admin, "classifier", "listed", "/nowhere", ["joy"], {"global": 0.3}, {},
                            {"dev_macro_f1": 0.5})
    assert cli.main(["--user", "admin", "models"]) == 0
    assert "listed  (1 labels; dev_macro_f1 0.500)" in capsys.readouterr().out
    assert cli.main(["--user", "admin", "export-model", "999", "--out", "x"]) == 2  # no such model: an error


def test_a_version_reads_as_splits_with_contextual_examples_as_sentence_pairs(admin):
    from transformers import AutoTokenizer

    from core.train.data import load_version
    from tests.curate_support import make_character

    stories = make_stories(6)
    character = make_character(stories[0], name="Ann")
    add_example("I did it!", {"joy": 0.9, "pride": 0.6}, kind="contextual", context="She won the race.",
                character_id=character, story_id=stories[0])
    for i in range(1, 6):
        add_example(f"line {i}", {"sadness": 0.8}, story_id=stories[i])
    version_id = versions.freeze(admin, "pairs", ratios={"train": 0.5, "dev": 0.25, "test": 0.25}).id
    data = load_version(version_id)
    assert sum(data.counts().values()) == 6 and len(data.labels) == 28
    everything = data.all_splits()
    row = everything.texts.index("I did it!")
    assert everything.contexts[row] == "She won the race. A brave girl."  # context + character description
    assert {data.labels[j] for j in np.flatnonzero(everything.targets[row])} == {"joy", "pride"}

    tokenizer = AutoTokenizer.from_pretrained(C.default_base_model())
    encoded = C.Encoded(tokenizer, everything.texts, everything.contexts, 64)
    pair = tokenizer.decode(encoded.input_ids[row])
    assert pair.startswith("[CLS] she won the race. a brave girl. [SEP] i did it! [SEP]")
    assert set(encoded.token_type_ids[row]) == {0, 1}
    other = 1 - row if row == 0 else 0
    assert set(encoded.token_type_ids[other]) == {0}
