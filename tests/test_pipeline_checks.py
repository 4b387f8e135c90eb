"""The pipeline's checks and plans, without the engine: emotion words, echoed utterances, content gates,
stratified context quotas, story windows, presets and the step registry."""

import pytest

from core.pipeline import steps
from core.pipeline.cleaning import EmotionWords
from core.pipeline.plan import PRESETS, PlanError, RunConfig, story_windows
from core.pipeline.steps.base import Item, StepContext, names_a_character, reask, sentence_problem
from core.pipeline.steps.clean import repeats_context, word_overlap
from core.pipeline.steps.context import quotas

LABELS = [("admiration", "Finding something impressive or worthy of respect."), ("joy", "A feeling of pleasure and happiness."),
          ("neutral", "")]


def test_emotion_words_are_found_through_inflections_irregular_forms_and_synonyms():
    words = EmotionWords(["disappointment", "fear", "optimism", "caring", "neutral"], {"dread": "fear"})
    found = words.find("She was disappointed, afraid and optimistic; the dread grew. Her career went on.")
    assert found == {"disappointment": ["disappointed"], "fear": ["afraid", "dread"], "optimism": ["optimistic"]}
    assert words.find("He fixed the roof before the storm.") == {}


def test_an_utterance_that_echoes_its_context_is_caught():
    context = "The Fox with a Tongue Full of Stars"
    assert repeats_context("The Fox with a Tongue Full of Stars", context)
    assert repeats_context("Situation: the fox with a tongue", context)
    assert not repeats_context("I told you the ice would not hold.", context)
    assert not repeats_context("  ", context)


def test_content_gates_reject_fragments_label_names_copied_definitions_and_character_names():
    # what the 135M teacher wrote before the gates existed
    assert "not a sentence" in sentence_problem("fur", LABELS)
    assert "not a sentence" in sentence_problem("admiration", LABELS)
    assert "definition of admiration" in sentence_problem("Finding something impressive or worthy of respect", LABELS)
    assert sentence_problem("I never thought the old bridge would hold us both.", LABELS) is None
    assert names_a_character("Felix", {"felix", "old marta"})
    assert names_a_character("marta", {"felix", "old marta"})
    assert not names_a_character("joy", {"felix", "old marta"})


class Felix:
    name = "Felix"


def _small_ctx(engine=None, sampling=None) -> StepContext:
    """A step context of 2 emotional + 1 neutral utterances over LABELS, for the gates."""
    config = RunConfig(corpus_id=1, taxonomy_id=1, story_ids=[1], emotional=2, neutral=1)
    return StepContext(1, config, 1, LABELS, {}, {}, engine, sampling)


def _utterances(first: str, second: str, neutral: str = "I should water the plants before noon.",
                emotions=("joy", "admiration")) -> dict:
    return {"emotional": [{"emotion": emotions[0], "utterance": first}, {"emotion": emotions[1], "utterance": second}],
            "neutral": [neutral]}


BRAVE = "What a brave thing she did for us all."
FUR_REASON = "utterance 'fur' is not a sentence of at least 3 words"


def test_the_step_gates_see_the_answer_in_its_context():
    ctx = _small_ctx()
    assert steps.get("utterances").gates(ctx, Item((Felix(), None), None), _utterances("fur", BRAVE)) == [FUR_REASON]
    labels = steps.get("labels")
    assert labels.gates(ctx, Item((None, {"felix"}), None), {"emotions": [{"name": "Felix", "score": 0.5}]}) \
        == ["emotion 'Felix' is a character's name"]


def test_an_utterance_that_repeats_another_of_its_answer_is_asked_again():
    answer = _utterances("The stars shine so brightly tonight.", "the stars shine so brightly tonight")
    assert steps.get("utterances").gates(_small_ctx(), Item((Felix(), None), None), answer) == [
        "utterance 'the stars shine so brightly tonight' repeats an earlier sentence of this answer"]


def test_a_re_ask_of_utterances_keeps_the_slots_that_passed_and_mends_the_rest():
    from core.pipeline.steps.base import Answer, Gated

    ctx = _small_ctx()
    utterances = steps.get("utterances")
    item = Item((Felix(), None), None)
    first = Answer(11, _utterances("fur", BRAVE), "")
    second = Answer(12, _utterances("We finally found the lost key together.", "fear", neutral="admiration",
                                    emotions=("joy", "fear")), "")
    # After the first answer only slot e0 is open; the second fills it, so nothing is asked a third time,
    # although the second answer's own e1 and n0 fail.
    assert utterances.open_reasons(ctx, item, [first]) == [FUR_REASON]
    assert utterances.open_reasons(ctx, item, [first, second]) == []
    item.kept = Gated(second, [], 2, (first,))
    kept = {slot: (text, answer.request_id, problem) for slot, text, _, _, answer, problem
            in utterances._kept_slots(ctx, item)}
    assert kept == {"e0": ("We finally found the lost key together.", 12, None), "e1": (BRAVE, 11, None),
                    "n0": ("I should water the plants before noon.", 11, None)}
    # A slot no answer filled well keeps the newest utterance with its reason.
    third = Answer(13, _utterances("fur", "fear", neutral="admiration", emotions=("joy", "fear")), "")
    item.kept = Gated(third, ["..."], 2, (first,))
    kept = {slot: (text, problem) for slot, text, _, _, _, problem in utterances._kept_slots(ctx, item)}
    assert kept["e0"] == ("fur", FUR_REASON)
    assert kept["e1"] == (BRAVE, None) and kept["n0"][1] is None


def test_a_re_ask_that_gets_no_answer_keeps_what_the_earlier_answer_gave(monkeypatch):
    """A re-ask can fail (e.g. the rejected answer appended outgrows the model's context): the character
    keeps its earlier answer, good slots and all, flagged with the open reasons, instead of being lost."""
    from contextlib import nullcontext

    from core.llm.runner import RunReport
    from core.llm.types import ChatRequest, Sampling
    from core.pipeline import gating
    from core.pipeline.steps.base import Answer

    class Engine:
        name, model = "vllm", "m"

    ctx = _small_ctx(Engine(), Sampling())
    first = ChatRequest(({"role": "user", "content": "Q"},), Sampling(0.0, 1.0, 50, 7)).with_key("vllm", "m")
    answer = Answer(21, _utterances("fur", BRAVE), '{"...": 1}')
    asked = []
    monkeypatch.setattr(gating, "run_requests", lambda jctx, engine, requests, **kw: asked.append(requests) or RunReport())
    monkeypatch.setattr(gating, "answers", lambda session, requests: {first.key: answer})  # the re-ask: none
    monkeypatch.setattr(gating, "read_session", nullcontext)
    monkeypatch.setattr(gating, "spent", lambda requests, items: {"requests": items, "calls": len(requests)})
    item = Item((Felix(), None), first)
    outcome = gating.ask_gated(None, ctx, steps.get("utterances"), [item], {"validation_attempts": 3}, "")
    assert len(asked) == 2 and asked[1][0].key != first.key  # asked, then re-asked once (that got nothing)
    assert item.kept.answer is answer and item.kept.rejected == [FUR_REASON]
    assert outcome.rejected == 1 and outcome.kept_with_reason == 1


def test_each_re_ask_holds_the_first_question_and_only_the_newest_rejected_answer(monkeypatch):
    """Appending every rejected answer made a third attempt outgrow the bundled teacher's 2,048 tokens."""
    from contextlib import nullcontext

    from core.llm.runner import RunReport
    from core.llm.types import ChatRequest, Sampling
    from core.pipeline import gating
    from core.pipeline.steps.base import Answer

    class Engine:
        name, model = "vllm", "m"

    ctx = _small_ctx(Engine(), Sampling())
    first = ChatRequest(({"role": "user", "content": "Q"},), Sampling(0.0, 1.0, 50, 7)).with_key("vllm", "m")
    asked = []
    monkeypatch.setattr(gating, "run_requests", lambda jctx, engine, requests, **kw: asked.append(requests) or RunReport())
    monkeypatch.setattr(gating, "answers", lambda session, requests: {  # every answer has the same bad slot
        r.key: Answer(len(asked), _utterances("fur", BRAVE), f'{{"answer": {len(asked)}}}') for r in requests})
    monkeypatch.setattr(gating, "read_session", nullcontext)
    monkeypatch.setattr(gating, "spent", lambda requests, items: {"requests": items, "calls": len(requests)})
    item = Item((Felix(), None), first)
    gating.ask_gated(None, ctx, steps.get("utterances"), [item], {"validation_attempts": 3}, "")
    third = asked[2][0]
    assert len(asked) == 3 and len(third.messages) == len(first.messages) + 2
    assert third.messages[0] == first.messages[0]
    assert third.messages[1] == {"role": "assistant", "content": '{"answer": 2}'}  # the second answer only


def test_a_rejected_answer_is_asked_again_with_its_reasons_so_greedy_decoding_can_change():
    from core.llm.types import ChatRequest, Sampling

    class Engine:
        name, model = "vllm", "m"

    first = ChatRequest(({"role": "user", "content": "Q"},), Sampling(0.0, 1.0, 50, 7)).with_key("vllm", "m")
    again = reask(first, '{"utterance": "fur"}', ["too short"], Engine())
    assert again.key != first.key and again.sampling == first.sampling
    assert again.messages[-2] == {"role": "assistant", "content": '{"utterance": "fur"}'}
    assert "too short" in again.messages[-1]["content"]


def test_contexts_go_to_each_emotion_in_proportion():
    assert quotas({"joy": 9, "fear": 3, "grief": 3}, 1 / 3) == {"joy": 3, "fear": 1, "grief": 1}
    counts = quotas({"a": 2, "b": 2, "c": 2, "d": 1}, 1 / 3)
    assert sum(counts.values()) == round(7 / 3) and all(v <= 1 for v in counts.values())
    assert quotas({"a": 5}, 1.0) == {"a": 5}
    # a small run that asked for contexts gets at least one (the plan counts the same)
    assert quotas({"a": 1}, 1 / 3) == {"a": 1} and quotas({"a": 1, "b": 1}, 0.2) in ({"a": 1, "b": 0}, {"a": 0, "b": 1})
    assert quotas({}, 1 / 3) == {}


def test_story_windows_group_consecutive_passages():
    passages = [(1, "a " * 300), (2, "b " * 250), (3, "c " * 200)]
    assert [first for first, _ in story_windows(passages, 600)] == [1, 3]
    assert [first for first, _ in story_windows(passages, 0)] == [1, 2, 3]
    assert story_windows([(9, "x " * 900)], 600)[0][0] == 9  # a long passage is still read


def test_presets_are_data_and_checked():
    paper = RunConfig.for_preset("paper", 1, 1, story_ids=[1])
    assert paper.steps[1] == "utterances" and paper.max_characters == 15 and paper.max_emotions == 5
    assert paper.variants == ["original", "rewritten"] and paper.greedy and paper.repetition_penalty == 1.03
    balanced = RunConfig.for_preset("balanced", 1, 1, story_ids=[1])
    assert balanced.steps[1] == "targeted_utterances" and balanced.context_share == 1.0
    assert RunConfig.from_dict({"corpus_id": 1, "taxonomy_id": 1, "story_ids": [1]}).preset == "balanced"  # older runs
    for name in PRESETS:
        assert all(step in steps.STEPS for step in PRESETS[name]["steps"])
    with pytest.raises(PlanError, match="Share"):
        RunConfig.for_preset("paper", 1, 1, story_ids=[1], context_share=0).check()
    with pytest.raises(PlanError, match="at most 20"):
        RunConfig.for_preset("paper", 1, 1, story_ids=[1], emotional=20, neutral=2).check()


def test_word_overlap_of_a_rewrite():
    assert word_overlap("I lost the key again", "I lost the key again") == 1.0
    assert word_overlap("I lost the key", "the door stays shut") == pytest.approx(2 * 1 / 8)


def test_the_contextual_classifier_input_is_context_and_character_description_then_the_utterance():
    from core.train.data import first_segment

    assert first_segment(" The ship came in dark. ", "a lighthouse keeper") == "The ship came in dark. a lighthouse keeper"
    assert first_segment("The ship came in dark.", None) == "The ship came in dark."
    assert first_segment("", "a lighthouse keeper") is None  # context-less: the utterance alone


def test_curate_filters_examples_by_pipeline_flag(database, admin):
    from core.curate import browse
    from core.curate.filters import CurationFilter
    from tests.curate_support import add_example

    named = add_example("I am so angry.", {"anger": 0.9}, kind="contextual", context="He shouted.",
                        meta={"flags": ["utterance_names_emotion"]})
    gated = add_example("fur", {"joy": 0.5}, meta={"flags": ["gate: utterance 'fur' is not a sentence"]})
    add_example("The tide came in early.", {"neutral": 0.8}, meta={"flags": []})
    ids = lambda f: sorted(row.id for row in browse.search(admin, f, "oldest", 0, 50)[0])  # noqa: E731
    assert ids(CurationFilter(flags=("names_emotion",))) == [named]
    assert ids(CurationFilter(flags=("gate",))) == [gated]
    assert ids(CurationFilter(flags=("gate", "names_emotion"))) == sorted([named, gated])
    with pytest.raises(ValueError, match="unknown flag"):
        browse.search(admin, CurationFilter(flags=("nope",)), "oldest", 0, 50)


def test_context_similarity_encodes_each_changed_pair_once_and_scores_an_unchanged_context_1(monkeypatch):
    from core import embeddings
    from core.pipeline.steps import clean

    encoded: list[list[str]] = []
    real = embeddings.embed
    monkeypatch.setattr(embeddings, "embed", lambda texts, **kw: encoded.append(list(texts)) or real(texts, **kw))
    raw = ["The wolf ate the last of the bread.", "She lost the race by a hair.", "The wolf ate the last of the bread."]
    cleaned = ["The wolf ate the last of the bread.", "She came second in the race.", "A wolf ate the bread."]
    values = clean.similarity(raw, cleaned)
    assert values[0] == 1.0 and 0.3 < values[1] < 1.0 and 0.5 < values[2] < 1.0
    assert len(encoded) == 1 and sorted(encoded[0]) == sorted(set(raw[1:] + cleaned[1:]))


def test_a_stored_variant_is_linked_flagged_where_a_word_names_its_parents_emotion_and_stored_once(database, admin):
    from types import SimpleNamespace

    from sqlalchemy import func, select

    from core.labels import teacher_scores
    from core.pipeline.steps import clean
    from db.models import Example, Suggestion
    from db.session import read_session, write_session
    from tests.curate_support import add_example, goemotions_id, make_character, make_stories

    story = make_stories(1)[0]
    character = SimpleNamespace(id=make_character(story))
    won = add_example("I finally crossed the line first.", {"joy": 0.8, "sadness": 0.1}, story_id=story)
    lost = add_example("The tide came in early today.", {"neutral": 0.9}, story_id=story)
    answer = lambda context, request_id=None: SimpleNamespace(  # noqa: E731 (a kept answer and its request)
        answer=SimpleNamespace(parsed={"context": context}, request_id=request_id),
        request=SimpleNamespace(sampling=SimpleNamespace(seed=7)), rejected=[])
    ctx = SimpleNamespace(run_id=None, label_names=["joy", "sadness", "neutral"], synonyms={},
                          taxonomy_id=goemotions_id(), templates={"clean": SimpleNamespace(id=None)})
    step = SimpleNamespace(stage="clean", template_stage="clean")
    with read_session() as session:
        parents = {e.id: e for e in session.scalars(select(Example).where(Example.id.in_([won, lost])))}
    chains = [
        (parents[won], character, answer("She was  sad, then joyful."), answer("She ran  joyfully to the end."),
         "What a joy this is.", None, {"context_similarity": 0.9}),
        (parents[lost], character, answer("The boat was late."), answer("The boat was late."),
         parents[lost].text, None, {}),
    ]
    with write_session() as session:
        assert clean.store_variant(ctx, session, step, chains, clean.ORIGINAL) == (2, 1)
    with write_session() as session:  # stored once: a resumed stage adds nothing
        assert clean.store_variant(ctx, session, step, chains, clean.ORIGINAL) == (0, 0)
    with read_session() as session:
        variants = {e.parent_id: e for e in session.scalars(select(Example).where(Example.kind == "contextual"))}
        own_rows = session.scalar(select(func.count()).select_from(Suggestion)
                                  .where(Suggestion.example_id.in_([v.id for v in variants.values()])))
    flagged, calm = variants[won], variants[lost]
    assert (flagged.context, flagged.raw_context, flagged.text) == (
        "She ran joyfully to the end.", "She was sad, then joyful.", "What a joy this is.")
    assert flagged.meta["variant"] == "original" and flagged.meta["context_similarity"] == 0.9
    assert flagged.meta["flags"] == ["context_names_emotion", "utterance_names_emotion"]
    assert flagged.meta["emotion_words"] == {"context": {"joy": ["joyfully"]}, "utterance": {"joy": ["joy"]}}
    assert "flags" not in calm.meta and "emotion_words" not in calm.meta  # sadness (0.1) is not the parent's emotion
    assert own_rows == 0 and teacher_scores([flagged.id])[flagged.id] == teacher_scores([won])[won]
