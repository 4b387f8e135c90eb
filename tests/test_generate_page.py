"""The Generate page and the Admin "Prompts & labels" tab, driven through AppTest (no engine starts)."""

from __future__ import annotations

from sqlalchemy import select

from core import corpus, labels, taxonomy
from core.pipeline import templates
from db.models import GenerationRun, Job
from db.session import read_session
from tests.test_pages import (  # noqa: F401 (fixtures)
    navigation_steady_state,
    open_page,
    shared_component_registry,
)
from ui.plain import md_escape


def _ready():
    taxonomy.seed_defaults()
    corpus.load_demo_corpus()


def test_generate_page_shows_the_cost_then_launches_a_run_job(admin):
    _ready()
    at = open_page(admin, "generate")
    assert not at.exception, at.exception
    at.number_input(key="gen_sample").set_value(2)
    at.number_input(key="gen_chars_paper").set_value(2)
    at.number_input(key="gen_emotional").set_value(4)
    at.number_input(key="gen_neutral").set_value(1).run()
    assert not at.exception, at.exception
    cost = " ".join(m.value for m in at.markdown)
    # The paper preset (the default), 2 stories of one passage each: 2 character calls, one utterance call per
    # character (4), 2 x 2 x 5 = 20 label calls, then a third of the 20 utterances (7) through context, clean, rewrite
    assert "**47 LLM calls**" in cost and "upper bound" in cost, cost
    at.radio(key="gen_preset").set_value("balanced").run()
    at.number_input(key="gen_chars_balanced").set_value(2).run()
    cost = " ".join(m.value for m in at.markdown)
    # balanced targets: one call per utterance (20) and a context for each: 2 + 5 x 20
    assert "**102 LLM calls**" in cost, cost
    at.radio(key="gen_preset").set_value("paper").run()
    at.button(key="gen_launch").click().run()
    assert not at.exception, at.exception
    with read_session() as session:
        run = session.scalars(select(GenerationRun)).one()
        job = session.get(Job, run.job_id)
        assert job.kind == "pipeline_run" and job.payload == {"run_id": run.id}
        assert len(run.config["story_ids"]) == 2 and run.config["emotional"] == 4 and run.config["preset"] == "paper"
        assert run.sampling["temperature"] == 0.0 and run.sampling["repetition_penalty"] == 1.03
        assert set(run.template_versions) >= {"characters", "rewrite"}
    assert any("queued" in s.value for s in at.success)
    # the Runs tab shows the run with its six stages waiting
    frames = [f.value for f in at.dataframe]
    stages = next(f for f in frames if "stage" in f.columns and "requests" in f.columns)
    assert list(stages["state"]) == ["waiting"] * 6


def test_generate_page_refuses_settings_without_stories(admin):
    _ready()
    at = open_page(admin, "generate")
    at.radio(key="gen_how").set_value("Chosen stories").run()
    assert not at.exception, at.exception
    assert any("Choose at least one story" in w.value for w in at.warning)
    assert not [b for b in at.button if b.key == "gen_launch"]


def test_admin_saves_a_new_template_version_and_refuses_an_unknown_placeholder(admin):
    at = open_page(admin, "admin")
    assert not at.exception, at.exception
    at.selectbox(key="tpl_stage").set_value("rewrite").run()
    area = next(a for a in at.text_area if a.label == "User prompt")
    area.input("Situation: {context}\n{character} thinks: \"{utterance}\". Make it need the situation. {mood}")
    at.button[[b.label for b in at.button].index("Save as a new version")].click().run()
    assert any(md_escape("{mood}") in e.value for e in at.error)
    assert [t.version for t in templates.versions("rewrite")] == [1]
    area = next(a for a in at.text_area if a.label == "User prompt")
    area.input("Situation: {context}\n{character} thinks: \"{utterance}\". Make it need the situation.")
    at.button[[b.label for b in at.button].index("Save as a new version")].click().run()
    assert not at.exception and not at.error
    assert templates.active_templates()["rewrite"].version == 2


def test_admin_sets_the_threshold_and_maps_an_oot_name(admin):
    from tests.test_labels import _example, _goemotions_id

    tid = _goemotions_id()
    example = _example(tid, [("wistfulness", 0.8)])
    at = open_page(admin, "admin")
    at.number_input(key="label_threshold").set_value(0.5).run()
    at.button(key="label_threshold_save").click().run()
    assert labels.threshold() == 0.5
    at.selectbox(key="oot_taxonomy").set_value(tid).run()
    assert not at.exception, at.exception
    form_select = [s for s in at.selectbox if s.label == "Name"][0]
    form_select.set_value("wistfulness")
    [r for r in at.radio if r.label == "Decision"][0].set_value("map")
    [s for s in at.selectbox if s.label == "Label (for Map)"][0].set_value("sadness")
    at.button[[b.label for b in at.button].index("Apply")].click().run()
    assert not at.exception, at.exception
    assert labels.example_labels([example])[example] == ["sadness"]


def test_runs_and_compare_tabs_show_examples_as_plain_text(admin):
    from core.pipeline import run as pipeline
    from core.pipeline import runs
    from db.models import Example, ExampleKind
    from db.session import write_session

    _ready()
    tid = taxonomy.get_taxonomy_by_name("GoEmotions").id
    corpus_id = corpus.list_corpora()[0].id
    run_ids = [pipeline.create_run(admin, pipeline.RunConfig(corpus_id=corpus_id, taxonomy_id=tid, seed=seed),
                                   sample_size=1) for seed in (1, 2)]
    with write_session() as session:
        for run_id in run_ids:
            example = Example(kind=ExampleKind.contextless, text="<script>alert(1)</script> **not bold**",
                              run_id=run_id, taxonomy_id=tid, target_emotion="joy", meta={"slot": "e0"})
            session.add(example)
            session.flush()
            labels.add_suggestions(session, example.id, tid, [labels.ScoredName("joy", 0.9)], agent="teacher:t")
    at = open_page(admin, "generate")
    at.selectbox(key="gen_run_pick").set_value(run_ids[0]).run()
    assert not at.exception, at.exception
    stages = next(f.value for f in at.dataframe if "calls estimated" in f.value.columns)  # the launch estimate
    launched = runs.run_detail(admin, run_ids[0]).estimate["stages"]
    assert dict(zip(stages["stage"], stages["calls estimated"])) == {k: v["calls"] for k, v in launched.items()}
    grid = next(f.value for f in at.dataframe if "utterance" in f.value.columns)
    assert list(grid["utterance"]) == ["<script>alert(1)</script> **not bold**"]
    assert list(grid["labels"]) == ["joy"]
    assert not any("alert(1)" in m.value for m in at.markdown)  # never rendered as markdown
    at.multiselect(key="gen_compare").set_value(run_ids).run()
    assert not at.exception, at.exception
    quotas = next(f.value for f in at.dataframe if "asked for" in f.value.columns)
    assert list(quotas["labelled so"]) == [1, 1]
