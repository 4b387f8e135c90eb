"""Contrastive zero-shot model (issue 7): the decision rule, real training steps of the bundled MiniLM,
zero-shot prediction over a label set never seen in training, save / reload, and the worker job on a
dataset version with teacher descriptors, cancel and resume."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select

from core import worker
from core.datasets import versions
from core.train import contrastive as C
from core.train import jobs as train_jobs
from core.train import registry
from db.models import DatasetMember, Descriptor, Evaluation, Example, TrainingMetric
from db.session import read_session, write_session
from tests.curate_support import add_example, make_stories

TINY = {"batch_size": 8, "max_length": 32, "label_max_length": 32, "log_every": 1, "checkpoint_every": 2,
        "seed": 5}

# Labels that are in no training taxonomy of these tests (nor in GoEmotions), with texts that plainly express them.
UNSEEN = [("cheerful", "In a bright, happy mood."), ("furious", "Extremely angry."),
          ("terrified", "Extremely frightened."), ("heartbroken", "Overwhelmed by grief or disappointment.")]
UNSEEN_TEXTS = [("What a lovely sunny morning, I'm smiling and humming all the way to work!", "cheerful"),
                ("Hooray, we won the game and everyone is laughing and dancing!", "cheerful"),
                ("How dare you lie to me again! I am so angry I could scream.", "furious"),
                ("They scratched my car on purpose and I am absolutely livid.", "furious"),
                ("There is someone in the house, I can hear footsteps and I'm shaking with fear.", "terrified"),
                ("The plane dropped suddenly and I was scared for my life.", "terrified"),
                ("She left me after ten years and I can't stop crying.", "heartbroken"),
                ("My dog died this morning and I feel empty and lost.", "heartbroken")]


# --------------------------------------------------------------------------- the decision rule


def test_rule_calibration_picks_the_best_family_and_value_on_a_hand_made_case():
    # Text 0 has both labels (cosines close), text 1 only label 0, text 2 only label 1.
    scores = np.array([[0.50, 0.48], [0.60, 0.20], [0.10, 0.55]])
    y = np.array([[1, 1], [1, 0], [0, 1]])
    rule = C.calibrate_rule(scores, y)
    assert rule.dev_macro_f1 == pytest.approx(1.0)
    assert (rule.apply(scores) == y).all()
    # The top label is always predicted, even under a threshold no score reaches.
    assert (C.apply_rule(scores, "threshold", 0.9) == np.array([[1, 0], [1, 0], [0, 1]])).all()
    # Margin 0.05: every label within 0.05 of the top one.
    assert (C.apply_rule(scores, "margin", 0.05) == y).all()
    with pytest.raises(ValueError, match="unknown decision rule"):
        C.apply_rule(scores, "vote", 1)


def test_label_wordings_and_descriptors_vary():
    wordings = C.label_wordings("joy", "Happiness or delight.")
    assert "joy" in wordings and "feeling joy" in wordings and "joy: Happiness or delight." in wordings
    assert C.label_wordings("awe") == ["awe", "feeling awe", "a text expressing awe"]
    import random

    rng = random.Random(0)
    made = {C.label_descriptors(["joy", "relief"], ["Happiness.", "Release from worry."], rng) for _ in range(40)}
    assert {"joy and relief", "feeling joy, relief"} <= made and len(made) == 4


# --------------------------------------------------------------------------- real training, unseen labels


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A few real training steps of the bundled MiniLM on hand-made texts of three labels."""
    labels = [("joy", "Happiness, delight or pleasure."), ("anger", "Strong displeasure or hostility."),
              ("sadness", "Unhappiness, sorrow or emotional pain.")]
    words = {0: ["I love this wonderful day", "so happy for you", "this made me smile"],
             1: ["this is outrageous", "I hate when they do that", "stop lying to me"],
             2: ["I miss her so much", "it is a sad day", "I feel so alone"]}
    examples = [C.TrainExample(f"{text} ({i})", (label,), descriptors=("a glad remark",) if label == 0 else ())
                for i in range(6) for label, texts in words.items() for text in texts]
    config = C.ContrastiveConfig(**{**TINY, "max_steps": 6, "mode": "labels"})
    result = C.train(examples, [n for n, _ in labels], [d for _, d in labels], config)
    return result, labels, tmp_path_factory.mktemp("contrastive")


def test_training_steps_lower_the_loss_and_report_progress(trained):
    result, _, _ = trained
    assert result.steps == 6 and not result.cancelled
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert {"softmax", "bce", "descriptor"} <= set(result.history[0])


def test_bfloat16_autocast_trains_too():
    labels = ["joy", "anger"]
    examples = [C.TrainExample(text, (label,)) for label, text in
                [(0, "so happy today"), (1, "this is outrageous"), (0, "what a delight"), (1, "stop lying to me")] * 2]
    result = C.train(examples, labels, ["Happiness.", "Hostility."],
                     C.ContrastiveConfig(**{**TINY, "max_steps": 2, "batch_size": 4, "precision": "bf16", "mode": "labels"}))
    assert result.steps == 2 and all(np.isfinite(h["loss"]) for h in result.history)
    assert C.ContrastiveConfig().precision == "fp32"  # autocast measured slower for these short texts on our CPU


def test_zero_shot_works_on_a_label_set_never_seen_in_training(trained):
    result, labels, _ = trained
    model = result.model
    names, descriptions = [n for n, _ in UNSEEN], [d for _, d in UNSEEN]
    assert not set(names) & {n for n, _ in labels}
    texts = [t for t, _ in UNSEEN_TEXTS]
    probs = model.predict(texts, None, names, descriptions)
    assert probs.shape == (8, 4) and ((probs >= 0) & (probs <= 1)).all()
    top = [names[i] for i in probs.argmax(1)]
    correct = sum(t == gold for t, (_, gold) in zip(top, UNSEEN_TEXTS))
    assert correct >= 6, list(zip(top, [g for _, g in UNSEEN_TEXTS]))
    # The columns follow the label set as given: reversing it reverses the columns.
    reversed_probs = model.predict(texts, None, names[::-1], descriptions[::-1])
    np.testing.assert_allclose(reversed_probs, probs[:, ::-1], atol=1e-5)
    # Names alone (no descriptions) work too, and a context changes the input.
    assert model.predict(texts[:1], None, names).shape == (1, 4)
    with_context = model.predict(texts[:1], ["Her brother had just insulted her."], names, descriptions)
    assert not np.allclose(with_context, probs[:1])


def test_a_saved_and_reloaded_model_gives_identical_predictions(trained):
    result, _, folder = trained
    path = result.model.save(folder / "model")
    assert (path / "config.json").exists() and (path / C.CONFIG_FILE).exists() and (path / "modules.json").exists()
    again = C.ContrastiveModel.load(path)
    names, descriptions = [n for n, _ in UNSEEN], [d for _, d in UNSEEN]
    texts = [t for t, _ in UNSEEN_TEXTS]
    np.testing.assert_allclose(again.predict(texts, None, names, descriptions),
                               result.model.predict(texts, None, names, descriptions), atol=1e-6)
    assert again.labels == ["joy", "anger", "sadness"]
    # The folder is a sentence-transformers model as well.
    from sentence_transformers import SentenceTransformer

    vectors = SentenceTransformer(str(path), device="cpu").encode(texts[:2], normalize_embeddings=True)
    np.testing.assert_allclose(vectors, again.embed_texts(texts[:2]), atol=1e-4)


def test_cancel_checkpoints_and_resume_continues_where_it_stopped(tmp_path):
    examples = [C.TrainExample(f"{w} {i}", (k,)) for i in range(8) for k, w in enumerate(["happy", "angry"])]
    config = C.ContrastiveConfig(**{**TINY, "max_steps": 4, "mode": "labels"})
    steps_seen = []

    def stop_at_two(report):
        steps_seen.append(report.step)
        return report.step < 2

    first = C.train(examples, ["joy", "anger"], ["", ""], config, checkpoint_dir=tmp_path, on_step=stop_at_two)
    assert first.cancelled and first.steps == 2
    assert C.latest_checkpoint(tmp_path).name == "step-2.pt"
    resumed_steps = []
    second = C.train(examples, ["joy", "anger"], ["", ""], config, checkpoint_dir=tmp_path,
                     on_step=lambda r: resumed_steps.append(r.step))
    assert resumed_steps == [3, 4] and second.steps == 4 and not second.cancelled


# --------------------------------------------------------------------------- the worker job on a version


def zeroshot_version(admin, n: int = 30) -> tuple[int, list[int]]:
    stories = make_stories(10)
    words = {"joy": "a wonderful happy day", "anger": "furious and angry", "sadness": "so sad and lonely"}
    ids = []
    for i in range(n):
        label = list(words)[i % 3]
        ids.append(add_example(f"{words[label]} {i}", {label: 0.9}, story_id=stories[i % 10]))
    return versions.freeze(admin, "zero-shot tiny", ratios={"train": 0.6, "dev": 0.2, "test": 0.2}).id, ids


def test_contrastive_job_trains_on_a_version_with_descriptors_cancels_resumes_and_registers(admin, monkeypatch):
    version_id, ids = zeroshot_version(admin)
    with write_session() as session:
        for example_id in ids[:10]:
            session.add(Descriptor(example_id=example_id, text="glad and relieved", agent="teacher:test"))
    monkeypatch.setattr(C, "CANCEL_POLL_SECONDS", 0.0)
    run_id = C.start_contrastive_run(admin, version_id, {**TINY, "max_steps": 4}, model_name="zs tiny")
    run = train_jobs.get_run(admin, run_id)
    assert (run.kind, run.status, run.job_status) == ("contrastive", "queued", "queued")

    original = C.StepReport.__init__

    def cancel_at_two(self, *args, **kwargs):  # "the page" cancels once step 2 is logged
        original(self, *args, **kwargs)
        if self.step == 2 and train_jobs.get_run(admin, run_id).job_status == "running":
            train_jobs.cancel_run(admin, run_id)

    monkeypatch.setattr(C.StepReport, "__init__", cancel_at_two)
    assert worker.serve(once=True, lease_seconds=120) == 1
    run = train_jobs.get_run(admin, run_id)
    assert (run.status, run.job_status, run.can_resume) == ("cancelled", "cancelled", True)
    assert C.latest_checkpoint(train_jobs.run_dir(run_id) / "checkpoints").name == "step-2.pt"

    monkeypatch.setattr(C.StepReport, "__init__", original)
    train_jobs.resume_run(admin, run_id)
    assert worker.serve(once=True, lease_seconds=120) == 1
    run = train_jobs.get_run(admin, run_id)
    assert (run.status, run.job_status) == ("succeeded", "succeeded"), run.error
    with read_session() as session:
        steps = sorted(set(session.scalars(select(TrainingMetric.step).where(
            TrainingMetric.run_id == run_id, TrainingMetric.split == "train", TrainingMetric.name == "loss"))))
        dev = session.scalars(select(TrainingMetric.name).where(TrainingMetric.run_id == run_id,
                                                                TrainingMetric.split == "dev")).all()
        evaluations = session.scalar(select(func.count()).select_from(Evaluation))
    assert steps == [1, 2, 3, 4] and sorted(dev) == ["macro_f1", "micro_f1"]
    assert evaluations == 2  # dev and test of the version

    record = registry.get_model(run.model_id)
    assert record.kind == "contrastive" and record.name == "zs tiny"
    assert len(record.labels) == 28 and {"joy", "anger", "sadness"} <= set(record.labels)  # the GoEmotions taxonomy
    with read_session() as session:
        described_train = session.scalar(select(func.count()).select_from(DatasetMember).where(
            DatasetMember.version_id == version_id, DatasetMember.split == "train",
            DatasetMember.example_id.in_(ids[:10])))
    assert record.metrics["train_described"] == described_train > 0  # the teacher's descriptors were used
    assert record.thresholds["rule"]["kind"] == "margin"
    predictor = registry.load_predictor(run.model_id)
    probs = predictor.predict(["I am so happy today"], None, ["cheerful", "furious"], ["", ""])
    assert probs.shape == (1, 2)
    exported = registry.export_model(admin, run.model_id)
    assert (exported / "model.safetensors").exists() and not list(exported.glob("*.pt"))
    with read_session() as session:  # the job did not change any example
        assert session.scalar(select(func.count()).select_from(Example)) == len(ids)


def test_contrastive_run_needs_an_admin_and_a_dev_split(admin, annotator):
    from core.auth import PermissionDenied

    stories = make_stories(2)
    add_example("only one", {"joy": 0.9}, story_id=stories[0])
    only_train = versions.freeze(admin, "train only", ratios={"train": 1.0}).id
    with pytest.raises(ValueError, match="needs train and dev"):
        C.start_contrastive_run(admin, only_train, {})
    with pytest.raises(PermissionDenied):
        C.start_contrastive_run(annotator, only_train, {})
    with pytest.raises(ValueError, match="batch size"):
        C.start_contrastive_run(admin, only_train, {"batch_size": 1})
    with pytest.raises(ValueError, match="wise_alpha"):
        C.start_contrastive_run(admin, only_train, {"wise_alpha": 0.0})
    with pytest.raises(ValueError, match="precision"):
        C.start_contrastive_run(admin, only_train, {"precision": "fp8"})


def test_weight_space_ensembling_with_the_base_encoder():
    import torch

    layer = torch.nn.Linear(2, 2)
    base = {k: v.clone() for k, v in layer.state_dict().items()}
    with torch.no_grad():
        layer.weight.add_(4.0)
    C.interpolate(layer, base, 0.25)
    np.testing.assert_allclose(layer.weight.detach().numpy(), (base["weight"] + 1.0).numpy(), atol=1e-6)
    assert C.ContrastiveConfig().wise_alpha == 1.0  # by default the trained weights are kept as they are
