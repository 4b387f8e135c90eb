"""Issue 16: distillation from teacher descriptors with no label read (scrambled-gold test), the sigmoid loss,
zero-shot regression from two poles, classifier exports that transformers.pipeline loads with EmoForge's
probabilities, and training runs started from a registered model (adaptation, lineage).

Real bundled MiniLM, tiny data and a few steps: seconds per test on a quiet CPU.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sqlalchemy import select

from core import worker
from core.datasets import versions
from core.train import classifier as CL
from core.train import contrastive as C
from core.train import dimensions, evaluate, external, registry
from core.train import jobs as train_jobs
from core.train.data import load_version
from db.models import DatasetMember, Descriptor
from db.session import write_session
from tests.conftest import shared_data
from tests.curate_support import add_example, make_stories

TINY = {"batch_size": 8, "max_length": 32, "label_max_length": 32, "log_every": 1, "checkpoint_every": 100,
        "seed": 5}
WORDS = {"joy": "a wonderful happy day", "anger": "furious and angry", "sadness": "so sad and lonely"}
TEACHER = {"joy": "delighted; cheerful, glad", "anger": "irritated; hostile", "sadness": "grieving; lonely, low"}


# --------------------------------------------------------------------------- the loss


def test_descriptor_rows_become_distinct_phrases():
    assert C.descriptor_phrases(["relieved; still wary of him", "Relieved, hopeful\nwary of him."]) == (
        "relieved", "still wary of him", "hopeful", "wary of him")
    assert C.descriptor_phrases(["", " ; "]) == ()


def test_the_sigmoid_loss_lowers_on_a_small_batch_without_any_label():
    # Labels are empty on purpose: distill mode learns from the descriptors alone.
    examples = [C.TrainExample(f"{WORDS[label]} ({i})", (), descriptors=C.descriptor_phrases([TEACHER[label]]))
                for i in range(2) for label in WORDS]
    examples.append(C.TrainExample("no descriptor here", ()))  # nothing to distil: left out
    config = C.ContrastiveConfig(**{**TINY, "max_steps": 6, "batch_size": 8, "learning_rate": 1e-4})
    assert config.mode == "distill"  # the default for zero-shot models
    result = C.train(examples, ["joy", "anger", "sadness"], ["", "", ""], config)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.05, losses
    assert {"sigmoid", "positives_per_text"} <= set(result.history[0]) and "softmax" not in result.history[0]
    assert result.history[0]["positives_per_text"] == pytest.approx(8 / 3)  # 3, 2 and 3 own phrases per label
    with pytest.raises(ValueError, match="teacher descriptors"):
        C.train([C.TrainExample("undescribed", (0,))], ["joy"], [""], config)


def test_a_phrase_two_texts_share_is_positive_for_both():
    import random

    from core.models_setup import ensure_student

    model = C.ContrastiveModel(ensure_student())
    batch = [C.TrainExample("great news", (), descriptors=("happy", "relieved")),
             C.TrainExample("we won", (), descriptors=("happy",)), C.TrainExample("he left", (), descriptors=("sad",))]
    out = C.distill_losses(model, batch, model.tokenizer.sep_token, C.ContrastiveConfig(**TINY), random.Random(0))
    # Columns: happy, relieved, sad. Rows: 2, 1 and 1 positives ("happy" counts for both of the first two texts).
    assert float(out["positives_per_text"]) == pytest.approx(4 / 3)
    assert out["loss"].requires_grad and float(out["loss"].detach()) > 0


# --------------------------------------------------------------------------- no label reaches training


def described_version(admin, n: int = 24) -> tuple[int, list[int]]:
    stories = make_stories(8)
    ids = []
    for i in range(n):
        label = list(WORDS)[i % 3]
        ids.append(add_example(f"{WORDS[label]} {i}", {label: 0.9}, story_id=stories[i % 8]))
    with write_session() as session:
        for i, example_id in enumerate(ids):
            session.add(Descriptor(example_id=example_id, text=TEACHER[list(WORDS)[i % 3]], agent="teacher:test"))
    return versions.freeze(admin, "distil tiny", ratios={"train": 0.6, "dev": 0.2, "test": 0.2}).id, ids


def trained_weights(admin, version_id: int, name: str) -> tuple[dict, registry.ModelRecord]:
    from safetensors.numpy import load_file

    run_id = C.start_contrastive_run(admin, version_id, {**TINY, "max_steps": 3}, model_name=name)
    assert worker.serve(once=True, lease_seconds=120) == 1
    run = train_jobs.get_run(admin, run_id)
    assert run.status == "succeeded", run.error
    record = registry.get_model(run.model_id)
    return load_file(f"{record.path}/model.safetensors"), record


def test_distill_mode_never_reads_labels_scrambled_gold_gives_identical_weights(admin):
    version_id, _ = described_version(admin)
    before = load_version(version_id).splits["train"].targets.copy()
    first, record = trained_weights(admin, version_id, "distil 1")
    assert record.config["mode"] == "distill" and record.thresholds["rule"] == {
        "kind": "margin", "value": 0.05, "dev_macro_f1": None}  # the a-priori rule: no label tuned it
    # Scramble every gold label and score of the version (joy -> anger -> sadness -> joy).
    rotate = {"joy": "anger", "anger": "sadness", "sadness": "joy"}
    with write_session() as session:
        for member in session.scalars(select(DatasetMember).where(DatasetMember.version_id == version_id)):
            member.labels = [rotate.get(n, n) for n in member.labels or []]
            member.scores = {rotate.get(n, n): v for n, v in (member.scores or {}).items()}
    after = load_version(version_id).splits["train"].targets
    assert not np.array_equal(before, after)  # the labels a supervised run would read did change
    second, _ = trained_weights(admin, version_id, "distil 2")
    assert first.keys() == second.keys()
    changed = [k for k in first if not np.array_equal(first[k], second[k])]
    assert not changed, changed[:3]
    base = load_file_of_student()
    assert any(not np.array_equal(first[k], base[k]) for k in first if k in base)  # and training did move them


def load_file_of_student() -> dict:
    from safetensors.numpy import load_file

    from core.models_setup import ensure_student

    return load_file(f"{ensure_student()}/model.safetensors")


# --------------------------------------------------------------------------- regression from two poles


def test_regression_figures_and_pole_scores_on_a_hand_made_case(tmp_path):
    out = dimensions.figures(np.array([1.0, 2.0, 3.0, 5.0]), np.array([2.0, 3.0, 4.0, 6.0]))
    assert out == {"pearson_r": pytest.approx(1.0), "mae": pytest.approx(1.0), "examples": 4}
    assert dimensions.figures(np.array([3.0, 1.0]), np.array([1.0, 3.0]))["pearson_r"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="two texts"):
        dimensions.figures(np.array([1.0]), np.array([1.0]))

    from core.train.baselines import EmbeddingBaseline

    model = EmbeddingBaseline()
    pleasant = ["What a lovely, warm and happy afternoon with my friends.", "I am delighted, this is wonderful."]
    unpleasant = ["This is awful, I feel sick and miserable.", "A horrible, painful and upsetting day."]
    values = dimensions.scores(model, pleasant + unpleasant, dimensions.VALENCE)
    assert ((values >= 1.0) & (values <= 5.0)).all()
    assert values[:2].min() > values[2:].max(), values
    swapped = dimensions.Dimension("v", dimensions.VALENCE.low, dimensions.VALENCE.high, 1.0, 5.0)
    np.testing.assert_allclose(dimensions.scores(model, pleasant, swapped), 6.0 - values[:2], atol=1e-5)
    with pytest.raises(ValueError, match="each pole"):
        dimensions.scores(model, pleasant, dimensions.Dimension("v", ("good",), (" ",)))
    assert dimensions.parse_poles("pleasant\nfeeling good; happy\n\n") == ("pleasant", "feeling good", "happy")

    # The default mapping is the cosine with the axis from the low pole to the high one, the same function
    # for every model; the logistic one uses the model's own temperature (1 for the untrained baseline).
    embedded = model.embed_texts(pleasant + unpleasant)
    high = dimensions.pole_vector(model, dimensions.VALENCE.high)
    low = dimensions.pole_vector(model, dimensions.VALENCE.low)
    axis_cos = embedded @ (high - low) / np.linalg.norm(embedded, axis=1) / np.linalg.norm(high - low)
    np.testing.assert_allclose(values, 1.0 + 4.0 * (1.0 + axis_cos) / 2.0, atol=1e-5)
    logistic = dimensions.scores(model, pleasant + unpleasant, dimensions.VALENCE, mapping="logistic")
    np.testing.assert_allclose(logistic, 1.0 + 4.0 / (1.0 + np.exp(-(embedded @ high - embedded @ low))), atol=1e-5)
    assert (np.argsort(logistic) == np.argsort(values)).all()
    with pytest.raises(ValueError, match="unknown mapping"):
        dimensions.scores(model, pleasant, dimensions.VALENCE, mapping="sigmoid")

    # EmoBank's file layout, read as a regression set and scored like an evaluation.
    (tmp_path / "emobank").mkdir()
    rows = [("a", "test", 4.2, pleasant[0]), ("b", "test", 4.0, pleasant[1]), ("c", "test", 1.6, unpleasant[0]),
            ("d", "train", 1.0, "ignored"), ("e", "test", 1.8, unpleasant[1])]
    (tmp_path / "emobank" / "emobank.csv").write_text(
        "id,split,V,A,D,text\n" + "".join(f'{i},{s},{v},3,3,"{t}"\n' for i, s, v, t in rows))
    bank = external.emobank("test", tmp_path)
    assert len(bank) == 4 and bank.gold.tolist() == [4.2, 4.0, 1.6, 1.8]
    figs = dimensions.evaluate(model, bank)
    assert figs["pearson_r"] > 0.8 and figs["dimension"] == "valence" and figs["examples"] == 4
    assert figs["mapping"] == "axis" and dimensions.evaluate(model, bank, "logistic")["mapping"] == "logistic"


# --------------------------------------------------------------------------- export and adaptation


def tiny_version(admin, n: int = 36) -> int:
    stories = make_stories(9)
    for i in range(n):
        label = list(WORDS)[i % 3]
        add_example(f"{WORDS[label]} {i}", {label: 0.9}, story_id=stories[i % 9])
    return versions.freeze(admin, "adapt tiny", ratios={"train": 0.6, "dev": 0.2, "test": 0.2}).id


def run_classifier(admin, version_id: int, settings: dict, parent: int | None = None) -> registry.ModelRecord:
    run_id = train_jobs.start_classifier_run(admin, version_id, settings, parent_model_id=parent)
    assert worker.serve(once=True) == 1
    run = train_jobs.get_run(admin, run_id)
    assert run.status == "succeeded", run.error
    return registry.get_model(run.model_id)


def test_export_loads_in_transformers_pipeline_and_a_run_from_a_registered_model_continues_from_it(admin, tmp_path):
    from transformers import AutoModelForSequenceClassification, pipeline

    version_id = tiny_version(admin)
    parent = run_classifier(admin, version_id, {"max_length": 32, "batch_size": 8, "max_steps": 3, "eval_every": 3,
                                                "seed": 3})
    texts = ["what a wonderful happy day", "I am furious and angry with you", "so sad and lonely tonight"]
    ours = registry.load_predictor(parent.id, cache=False).predict(texts)

    # The export round trip: transformers' own classes give EmoForge's probabilities.
    folder = registry.export_model(admin, parent.id, tmp_path / "export")
    config = json.loads((folder / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification" and config["threshold"] == parent.global_threshold
    assert [config["id2label"][str(i)] for i in range(len(parent.labels))] == parent.labels
    classify = pipeline("text-classification", model=str(folder), trust_remote_code=True, top_k=None, device="cpu")
    answers = classify(texts, truncation=True)
    theirs = np.array([[{a["label"]: a["score"] for a in answer}[name] for name in parent.labels] for answer in answers])
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
    auto = AutoModelForSequenceClassification.from_pretrained(str(folder), trust_remote_code=True)
    assert auto.config.num_labels == len(parent.labels)
    from sentence_transformers import SentenceTransformer  # the same folder still loads as before

    np.testing.assert_allclose(SentenceTransformer(str(folder), device="cpu").encode(texts), ours, atol=1e-5)
    shutil.rmtree(folder)

    # A run started from it, at a learning rate too small to move anything, predicts what the parent did:
    # it started from the parent's encoder AND head (the label sets match), not from the base encoder.
    assert "match" in train_jobs.adaptation_note(admin, parent.id, version_id)
    still = {"max_length": 32, "batch_size": 8, "max_steps": 1, "eval_every": 1, "seed": 4,
             "learning_rate": 1e-12, "head_learning_rate": 1e-12}
    child = run_classifier(admin, version_id, still, parent=parent.id)
    assert child.parent_id == parent.id and child.config["head"] == "kept"
    np.testing.assert_allclose(registry.load_predictor(child.id, cache=False).predict(texts), ours, atol=1e-4)
    fresh = run_classifier(admin, version_id, still)  # the same settings without a parent: another model
    assert fresh.parent_id is None
    assert np.abs(registry.load_predictor(fresh.id, cache=False).predict(texts) - ours).max() > 1e-2
    head, note = CL.parent_head(parent.path, ["joy", "schadenfreude"])
    assert head is None and "differ" in note and "schadenfreude" in note


def test_teacher_baseline_defaults_to_the_whole_set(admin, monkeypatch):
    from core.train import baselines

    monkeypatch.setattr(external, "DEFAULT_DATA_DIR", shared_data("semeval2018_ec").parent)
    job_id = baselines.enqueue_teacher_baseline(admin, {"source": "builtin", "name": "semeval-ec", "split": "dev"})
    from db.models import Job
    from db.session import read_session

    with read_session() as session:
        assert session.get(Job, job_id).payload["spec"]["limit"] is None
    spec = evaluate.EvalSpec.from_dict({"source": "builtin", "name": "semeval-ec", "split": "dev", "limit": None})
    assert spec.benchmark == "semeval-ec/dev" and len(evaluate.load_eval_set(spec)[0]) == 886
    with pytest.raises(ValueError, match="classification set"):
        baselines.enqueue_teacher_baseline(admin, {"source": "builtin", "name": "emobank-valence", "split": "test"})
