"""Evaluation (issue 7): external sets read from files, figures (F1, per label, confusion, calibration) on
hand-made cases, the NRC and embedding baselines, the evaluation job storing evaluations compared side by
side, and the teacher LLM's zero-shot labels with the real engine."""

from __future__ import annotations

import numpy as np
import pytest

from core import worker
from core.train import baselines, evaluate, external, registry
from core.train.rules import Rule
from core.train.evaluate import EvalSpec, Scored
from core.train.external import EvalSet
from tests.conftest import shared_data


def write_sets(folder):
    """The four built-in sets in their published formats, a few lines each."""
    (folder / "goemotions").mkdir(parents=True)
    # label ids: 17 joy, 2 anger, 3 annoyance, 27 neutral, 25 sadness, 26 surprise
    (folder / "goemotions" / "test.tsv").write_text(
        "So happy for you\t17\tc1\nThis is annoying and infuriating\t2,3\tc2\nOk then\t27\tc3\n"
        '"Quoted ""text"" here"\t25,26\tc4\n')
    (folder / "emotion_dairai").mkdir()
    (folder / "emotion_dairai" / "test.txt").write_text(
        "text;label_name\ni feel wonderful;joy\ni feel so alone;sadness\ni am furious;anger\n")
    (folder / "semeval2018_ec").mkdir()
    header = "ID\tTweet\tanger\tanticipation\tdisgust\tfear\tjoy\tlove\toptimism\tpessimism\tsadness\tsurprise\ttrust\n"
    (folder / "semeval2018_ec" / "2018-E-c-En-dev.txt").write_text(
        header + "2018-En-1\tCan't wait for tomorrow!\t0\t1\t0\t0\t1\t0\t1\t0\t0\t0\t0\n"
        "2018-En-2\tSo \"sick\" of this\t1\t0\t1\t0\t0\t0\t0\t0\t0\t0\t0\n")
    return folder


# --------------------------------------------------------------------------- external sets


def test_external_sets_are_read_with_their_label_sets_and_groupings(tmp_path):
    base = write_sets(tmp_path)
    go = external.load("goemotions", "test", base)
    assert len(go) == 4 and len(go.labels) == 28 and go.multi_label
    assert go.texts[3] == 'Quoted "text" here'
    assert go.y[1, go.labels.index("anger")] == 1 and go.y[1, go.labels.index("annoyance")] == 1
    ekman = external.load("goemotions-ekman", "test", base)
    assert ekman.labels == ["anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral"]
    assert ekman.y[1].tolist() == [1, 0, 0, 0, 0, 0, 0]  # anger + annoyance -> anger, once
    assert ekman.y[3].tolist() == [0, 0, 0, 0, 1, 1, 0]
    sentiment = external.load("goemotions-sentiment", "test", base)
    assert sentiment.labels == ["positive", "negative", "ambiguous", "neutral"]
    assert sentiment.y[:, 0].tolist() == [1, 0, 0, 0] and sentiment.y[3].tolist() == [0, 1, 1, 0]
    e6 = external.load("emotion6", "test", base)
    assert not e6.multi_label and e6.labels == ["sadness", "joy", "love", "anger", "fear", "surprise"]
    assert e6.y.argmax(1).tolist() == [1, 0, 3] and e6.y.sum() == 3
    ec = external.load("semeval-ec", "dev", base)
    assert len(ec.labels) == 11 and ec.texts[1] == 'So "sick" of this'
    assert [ec.labels[i] for i in np.flatnonzero(ec.y[0])] == ["anticipation", "joy", "optimism"]
    assert all(ec.descriptions)
    assert external.available(base) == {**{name: True for name in external.BUILTIN}, "emobank-valence": False}
    with pytest.raises(ValueError, match="no 'test' split"):
        external.load("semeval-ec", "test", base)
    with pytest.raises(FileNotFoundError):
        external.load("emotion6", "train", base)


def test_a_users_own_file_is_read_over_a_label_set_and_unknown_labels_are_counted():
    data = b"text,labels\nwhat a day,joy\nso unfair,\"anger,annoyed\"\n"
    evalset = external.read_file("mine.csv", data, [("joy", ""), ("anger", "")], name="mine")
    assert evalset.texts == ["what a day", "so unfair"] and evalset.y.tolist() == [[1, 0], [0, 1]]
    assert evalset.meta["unknown_labels"] == {"annoyed": 1}


def test_real_published_files_load(tmp_path):
    shared_data("semeval2018_ec")
    assert len(external.load("semeval-ec", "dev")) == 886
    e6 = external.load("emotion6", "test")
    assert len(e6) == 2000 and e6.y.sum() == 2000


# --------------------------------------------------------------------------- figures


def test_figures_on_a_hand_made_single_label_case():
    y = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    evalset = EvalSet("hand", ["a", "b", "c"], ["", "", ""], ["w", "x", "y", "z"], y, multi_label=False)
    figs = evaluate.figures(evalset, Scored(scores, evaluate._top1(scores), {"kind": "top-1"}))
    assert figs["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert figs["accuracy"] == pytest.approx(0.75)
    rows = {r["label"]: r for r in figs["per_label"]}
    assert (rows["a"]["precision"], rows["a"]["recall"]) == (1.0, 0.5)
    assert (rows["b"]["precision"], rows["b"]["recall"]) == (0.5, 1.0)
    assert figs["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)


def test_a_sample_and_the_rest_split_a_set_in_two_disjoint_parts():
    texts = [f"t{i}" for i in range(10)]
    evalset = EvalSet("hand", ["a", "b"], ["", ""], texts, np.eye(2, dtype=np.int8)[[i % 2 for i in range(10)]],
                      contexts=[f"c{i}" for i in range(10)])
    sample, rest = evalset.sample_and_rest(4, seed=3)
    assert len(sample) == 4 and len(rest) == 6 and sorted(sample.texts + rest.texts) == sorted(texts)
    assert sample.texts == evalset.sample(4, seed=3).texts  # the calibration sample bench.zeroshot always drew
    assert [int(t[1:]) % 2 for t in rest.texts] == rest.y.argmax(1).tolist()  # rows stay with their labels
    assert rest.contexts == ["c" + t[1:] for t in rest.texts]
    whole, nothing = evalset.sample_and_rest(20)
    assert whole is evalset and len(nothing) == 0


def test_multi_label_confusion_and_calibration_on_a_hand_made_case():
    y = np.array([[1, 1], [1, 0]])
    pred = np.array([[1, 0], [1, 1]])
    # texts with a: a predicted twice, b once; the text with b: a predicted once, b never
    assert evaluate.confusion(y, pred, True) == [[2, 1], [1, 0]]
    probs = np.array([[0.95, 0.15], [0.85, 0.05]])
    calib = evaluate.calibration(y, probs)
    bins = {b["bin"]: b for b in calib["bins"]}
    assert set(bins) == {0, 1, 8, 9}
    assert bins[9]["observed"] == 1.0 and bins[9]["count"] == 1 and bins[1]["observed"] == 1.0
    # |0.95-1| + |0.85-1| + |0.15-1| + |0.05-0| over 4 cells
    assert calib["ece"] == pytest.approx((0.05 + 0.15 + 0.85 + 0.05) / 4)


# --------------------------------------------------------------------------- baselines


def test_nrc_baseline_tokenises_itself_and_maps_labels():
    nrc = baselines.NRCBaseline()
    assert baselines.tokenise("I'm SO angry, furious!!") == ["i'm", "so", "angry", "furious"]
    probs = nrc.predict(["I am so angry and furious about this", "The meeting is at noon", "I feel happy"],
                        None, ["anger", "joy", "love", "neutral", "boredom"])
    assert probs[0].argmax() == 0 and probs[0, 0] > 0.3
    assert probs[1, 3] == 1.0 and probs[1, :3].sum() == 0  # no affect word: neutral
    assert probs[2, 1] > 0 and probs[2, 2] > 0  # love = joy + trust (Plutchik)
    assert nrc.uncovered == ["boredom"] and (probs[:, 4] == 0).all()


def test_embedding_baseline_scores_label_names_with_the_untrained_encoder():
    base = baselines.EmbeddingBaseline(rule=Rule("threshold", 0.3))
    cos = base.cosines(["I am terrified of spiders", "what a joyful party"], None, ["fear", "joy"])
    assert cos[0].argmax() == 0 and cos[1].argmax() == 1
    # names only: descriptions do not change the label side of this baseline
    np.testing.assert_allclose(cos, base.cosines(["I am terrified of spiders", "what a joyful party"], None,
                                                 ["fear", "joy"], ["Being afraid.", "Happiness."]), atol=1e-6)
    assert ((base.probabilities(cos) >= 0) & (base.probabilities(cos) <= 1)).all()


# --------------------------------------------------------------------------- stored evaluations


def test_evaluation_job_stores_figures_and_compares_models(admin, tmp_path, monkeypatch):
    base = write_sets(tmp_path / "data")
    monkeypatch.setattr(external, "DEFAULT_DATA_DIR", base)
    ids = baselines.register_baselines(admin, {"source": "builtin", "name": "goemotions", "split": "test"}, base)
    embedding_id, nrc_id = ids["baseline: untrained embedding similarity"], ids["baseline: NRC lexicon"]
    assert registry.get_model(embedding_id).config["rule"]["kind"] in ("threshold", "margin")
    specs = [EvalSpec("builtin", "emotion6", "test"), EvalSpec("builtin", "semeval-ec", "dev")]
    job_id = evaluate.enqueue_evaluation(admin, [embedding_id, nrc_id], specs)
    assert worker.serve(once=True, lease_seconds=120) == 1
    from core import jobs

    view = jobs.get_job(admin, job_id)
    assert view.status.value == "succeeded", view.error
    rows = evaluate.list_evaluations(admin)
    assert sorted((r.model, r.benchmark) for r in rows) == sorted(
        (name, b) for name in ids for b in ("emotion6/test", "semeval-ec/dev"))
    e6 = next(r for r in rows if r.model_id == nrc_id and r.benchmark == "emotion6/test")
    assert e6.examples == 3 and len(e6.figures["confusion"]) == 6 and e6.figures["rule"] == {"kind": "top-1"}
    assert e6.figures["per_label"][1]["label"] == "joy"
    table = evaluate.comparison(admin)
    assert {row["model"] for row in table} == set(ids)
    assert all("emotion6/test macro-F1" in row and "semeval-ec/dev micro-F1" in row for row in table)
    from core.train import charts

    assert len(charts.comparison_bars(table).data) == 2
    on_e6 = {r.model: r.figures for r in rows if r.benchmark == "emotion6/test"}
    assert len(charts.per_label_f1(on_e6).data) == 2 and len(charts.calibration_curve(on_e6).data) == 3
    assert charts.confusion_heatmap(e6.figures).data[0].z is not None
    # An unknown model or a missing set is refused before anything is queued.
    with pytest.raises(ValueError, match="No model"):
        evaluate.enqueue_evaluation(admin, [999], specs)
    monkeypatch.setattr(external, "DEFAULT_DATA_DIR", tmp_path / "nothing")
    with pytest.raises(ValueError, match="not in"):
        evaluate.enqueue_evaluation(admin, [nrc_id], specs)


def test_a_classifier_is_scored_on_groupings_of_its_labels():
    class Fixed:
        kind = "classifier"

        def __init__(self):
            self.labels = ["joy", "anger", "annoyance", "neutral"]
            self.thresholds = {"global": 0.5}

        def predict(self, texts, contexts=None, label_names=None, label_descriptions=None):
            probs = np.array([[0.9, 0.1, 0.2, 0.0], [0.1, 0.3, 0.7, 0.1]])
            if label_names is not None:
                return probs[:, [self.labels.index(n) for n in label_names]]
            return probs

    evalset = EvalSet("goemotions-ekman/test", ["anger", "joy", "neutral"], ["", "", ""], ["a", "b"],
                      np.array([[0, 1, 0], [1, 0, 0]]))
    scored = evaluate.score(Fixed(), evalset)
    np.testing.assert_allclose(scored.probs, [[0.2, 0.9, 0.0], [0.7, 0.1, 0.1]])  # anger = max(anger, annoyance)
    assert scored.decisions.tolist() == [[0, 1, 0], [1, 0, 0]] and scored.rule["value"] == 0.5
    unknown = EvalSet("other", ["awe"], [""], ["a"], np.array([[1]]))
    with pytest.raises(ValueError, match="does not know"):
        evaluate.score(Fixed(), unknown)


@pytest.mark.slow
def test_teacher_zero_shot_labels_with_the_real_engine(admin, vllm_engine, monkeypatch, tmp_path):
    from core.pipeline import annotate

    base = write_sets(tmp_path / "data")
    monkeypatch.setattr(external, "DEFAULT_DATA_DIR", base)
    monkeypatch.setattr(annotate, "current_engine", lambda: vllm_engine)
    job_id = baselines.enqueue_teacher_baseline(admin, {"source": "builtin", "name": "semeval-ec", "split": "dev"},
                                                limit=2)
    assert worker.serve(once=True, lease_seconds=300) == 1
    from core import jobs

    view = jobs.get_job(admin, job_id)
    assert view.status.value == "succeeded", view.error
    [row] = evaluate.list_evaluations(admin)
    assert row.model == f"baseline: teacher {vllm_engine.model}" and row.benchmark == "semeval-ec/dev (first 2)"
    assert row.figures["requests"] == 2 and 1 <= row.figures["answered"] <= 2
    assert len(row.figures["per_label"]) == 11 and 0.0 <= row.macro_f1 <= 1.0
    # the teacher's answers are cached: the same job again asks the engine nothing
    baselines.enqueue_teacher_baseline(admin, {"source": "builtin", "name": "semeval-ec", "split": "dev"}, limit=2)
    assert worker.serve(once=True, lease_seconds=300) == 1
    latest = evaluate.list_evaluations(admin)[0]
    assert latest.figures["llm"]["cached"] == latest.figures["answered"]


def test_teacher_scores_keep_labels_of_the_set_only():
    scores = baselines.teacher_scores({"emotions": [{"name": "Joy", "score": 0.8}, {"name": "awe", "score": 0.9},
                                                    {"name": "joy", "score": 0.5}]}, ["anger", "joy"])
    assert scores.tolist() == [0.0, 0.8]
    assert baselines.teacher_scores(None, ["anger"]).tolist() == [0.0]


def test_cli_queues_evaluations_baselines_and_zero_shot_training(admin, tmp_path, monkeypatch, capsys):
    from core import cli, jobs

    monkeypatch.setenv("EMOFORGE_PASSWORD", "admin-pass-123")
    monkeypatch.setattr(external, "DEFAULT_DATA_DIR", write_sets(tmp_path / "data"))
    model_id = registry.register_model(admin, "baseline", "nrc", "", [], config={"baseline": "nrc"})
    assert cli.main(["--user", "admin", "evaluate", str(model_id), "--set", "emotion6", "--set", "semeval-ec",
                     "--limit", "2"]) == 0
    assert "emotion6/test (first 2), semeval-ec/dev (first 2)" in capsys.readouterr().out
    assert cli.main(["--user", "admin", "baselines"]) == 0
    assert cli.main(["--user", "admin", "baselines", "--teacher", "emotion6", "--limit", "5"]) == 0
    assert cli.main(["--user", "admin", "train-zeroshot", "999"]) == 2
    assert "no dataset version 999" in capsys.readouterr().err
    assert cli.main(["--user", "admin", "train-zeroshot", "999", "--wise-alpha", "1.5"]) == 2
    assert "wise_alpha" in capsys.readouterr().err
    assert [j.kind for j in jobs.list_jobs(admin)] == ["baseline_teacher", "register_baselines", "evaluate_model"]
