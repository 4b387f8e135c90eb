"""Playground page (issue 7), driven through streamlit.testing (AppTest): try a model on any label set,
compare stored evaluations, queue evaluations and baselines (admins only)."""

from __future__ import annotations

import numpy as np

from core import jobs
from core.train import evaluate, registry
from core.train.evaluate import Scored
from core.train.external import EvalSet
from tests.test_pages import navigation_steady_state, open_page, shared_component_registry  # noqa: F401


def embedding_baseline() -> int:
    from core.auth import system_actor
    from core.models_setup import ensure_student

    return registry.register_model(system_actor(), "baseline", "baseline: untrained embedding similarity",
                                   str(ensure_student()), [], config={"baseline": "embedding", "rule": {"kind": "threshold", "value": 0.3}})


def test_anyone_tries_a_zero_shot_model_on_labels_they_type(annotator):
    model_id = embedding_baseline()
    at = open_page(annotator, "playground")
    assert not at.exception, at.exception
    assert [t.label for t in at.tabs] == ["Try a model", "Compare evaluations"]  # no Evaluate tab for annotators
    assert at.selectbox(key="pg_model").value == model_id
    at.text_area(key="pg_text").input("I am terrified of what might happen tomorrow").run()
    at.selectbox(key="pg_label_set").set_value("custom labels (type them)").run()
    at.text_area(key="pg_custom").input("fear: being afraid\njoy\n<b>awe</b>: wonder").run()
    at.button(key="pg_predict").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value  # the only table: the prediction
    assert sorted(table["label"]) == ["<b>awe</b>", "fear", "joy"]
    assert table.iloc[0]["label"] == "fear"  # sorted by probability
    assert "fear" in at.success[0].value
    # a built-in label set, no text: a clear error
    at.selectbox(key="pg_label_set").set_value("emotion (6 classes)").run()
    at.text_area(key="pg_text").input("   ").run()
    at.button(key="pg_predict").click().run()
    assert [e.value for e in at.error] == ["Type a text first\\."]


def test_compare_tab_shows_stored_evaluations_side_by_side(admin):
    first, second = embedding_baseline(), registry.register_model(admin, "baseline", "baseline: NRC lexicon", "", [],
                                                                  config={"baseline": "nrc"})
    y = np.array([[1, 0], [0, 1], [1, 0]])
    evalset = EvalSet("hand/test", ["joy", "anger"], ["", ""], ["a", "b", "c"], y, multi_label=False)
    for model_id, probs in ((first, [[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]]), (second, [[0.6, 0.4], [0.7, 0.3],
                                                                                      [0.8, 0.2]])):
        probs = np.array(probs)
        evaluate.store_evaluation(admin, model_id, "hand/test", evaluate.figures(evalset, Scored(
            probs, evaluate._top1(probs), {"kind": "top-1"})))
    at = open_page(admin, "playground")
    assert not at.exception, at.exception
    assert [t.label for t in at.tabs] == ["Try a model", "Compare evaluations", "Evaluate"]
    table = at.dataframe[0].value  # models side by side
    assert dict(zip(table["model"], table["hand/test macro-F1"])) == {
        "baseline: untrained embedding similarity": round(evaluate.figures(evalset, Scored(
            np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]]), np.array([[1, 0], [0, 1], [0, 1]]), {}))["macro_f1"], 4),
        "baseline: NRC lexicon": round((0.8 + 0.0) / 2, 4)}
    assert at.multiselect(key="pg_compare_models").value == [second, first]
    assert len(at.get("plotly_chart")) >= 4  # comparison, per label, calibration, confusion (x2)


def test_admin_queues_an_evaluation_and_the_baselines(admin):
    model_id = embedding_baseline()
    at = open_page(admin, "playground")
    at.multiselect(key="pg_eval_models").set_value([model_id]).run()
    at.button(key="pg_eval_queue").click().run()
    assert not at.exception, at.exception
    if evaluate.builtin_specs():  # with ../shared/data present, a built-in set can be chosen
        assert [e.value for e in at.error] == ["Choose at least one model and one evaluation set\\."]
        at.multiselect(key="pg_eval_sets").set_value(["emotion6"]).run()
        at.number_input(key="pg_eval_limit").set_value(20).run()
        at.button(key="pg_eval_queue").click().run()
        assert not at.exception, at.exception
        queued = [j for j in jobs.list_jobs(admin) if j.kind == evaluate.JOB_KIND]
        assert len(queued) == 1 and "emotion6/test (first 20)" in queued[0].title
    at.button(key="pg_baselines").click().run()
    assert not at.exception, at.exception
    assert "register_baselines" in [j.kind for j in jobs.list_jobs(admin)]


def test_admin_starts_a_zero_shot_training_run_from_the_page(admin):
    from core.datasets import versions
    from core.train import jobs as train_jobs
    from tests.curate_support import add_example, make_stories

    stories = make_stories(10)
    for i in range(30):
        add_example(f"line {i}", {"joy": 0.9} if i % 2 else {"anger": 0.8}, story_id=stories[i % 10])
    version_id = versions.freeze(admin, "zs", ratios={"train": 0.6, "dev": 0.2, "test": 0.2}).id
    at = open_page(admin, "playground")
    # The form, the CLI and bench.zeroshot start from one set of defaults (ContrastiveConfig).
    from core import cli
    from core.train.contrastive import ContrastiveConfig

    defaults, parsed = ContrastiveConfig(), cli.build_parser().parse_args(["train-zeroshot", "3"])
    assert (defaults.learning_rate, defaults.epochs, defaults.max_steps, defaults.wise_alpha) == (1e-4, 1.0, 0, 1.0)
    assert (parsed.lr, parsed.epochs, parsed.steps, parsed.wise_alpha, parsed.batch_size) == (
        1e-4, 1.0, 0, 1.0, defaults.batch_size)
    assert (at.number_input(key="pg_zs_lr").value, at.number_input(key="pg_zs_epochs").value) == (1e-4, 1.0)
    at.selectbox(key="pg_zs_version").set_value(version_id).run()
    at.number_input(key="pg_zs_steps").set_value(200).run()
    at.number_input(key="pg_zs_alpha").set_value(0.6).run()
    at.text_input(key="pg_zs_name").input("zs from page").run()
    at.button(key="pg_zs_start").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    [run] = train_jobs.list_runs(admin)
    assert (run.kind, run.status, run.config["max_steps"], run.config["wise_alpha"], run.config["model_name"]) == (
        "contrastive", "queued", 200, 0.6, "zs from page")

    # The Train page follows it like a classifier run: listed with its kind, and cancellable there.
    train = open_page(admin, "train")
    assert not train.exception, train.exception
    listed = train.dataframe[0].value
    assert list(listed["kind"]) == ["contrastive"] and list(listed["run"]) == [run.id]
    train.button(key=f"trn_cancel_{run.id}").click().run()
    assert not train.exception, train.exception
    assert train_jobs.get_run(admin, run.id).status == "cancelled"  # still queued: cancelled at once


def test_anyone_scores_a_dimension_from_two_poles(annotator):
    embedding_baseline()
    at = open_page(annotator, "playground")
    at.text_area(key="pg_text").input("What a lovely, warm and happy afternoon with my friends.").run()
    assert at.text_area(key="pg_dim_high").value.splitlines()[0] == "pleasant"  # valence by default
    at.button(key="pg_dim_score").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    pleasant = float(at.metric[0].value)
    at.text_area(key="pg_text").input("This is awful, I feel sick and miserable.").run()
    at.button(key="pg_dim_score").click().run()
    assert 1.0 <= float(at.metric[0].value) < pleasant <= 5.0
    unpleasant_axis = float(at.metric[0].value)
    assert at.selectbox(key="pg_dim_mapping").value == "axis"  # the default, the same function for every model
    at.selectbox(key="pg_dim_mapping").select("logistic").run()
    at.button(key="pg_dim_score").click().run()
    assert 1.0 <= float(at.metric[0].value) < 3.0 and float(at.metric[0].value) != unpleasant_axis
    at.text_area(key="pg_dim_low").input("  ").run()
    at.button(key="pg_dim_score").click().run()
    assert [e.value for e in at.error] == ["give at least one wording for each pole"]
