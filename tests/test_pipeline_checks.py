"""The pipeline's text checks, without the engine: emotion words in a context, echoed utterances."""

from core.pipeline.cleaning import EmotionWords
from core.pipeline.stages import _repeats


def test_emotion_words_are_found_through_inflections_irregular_forms_and_synonyms():
    words = EmotionWords(["disappointment", "fear", "optimism", "caring", "neutral"], {"dread": "fear"})
    found = words.find("She was disappointed, afraid and optimistic; the dread grew. Her career went on.")
    assert found == {"disappointment": ["disappointed"], "fear": ["afraid", "dread"], "optimism": ["optimistic"]}
    assert words.find("He fixed the roof before the storm.") == {}


def test_an_utterance_that_echoes_its_context_is_caught():
    context = "The Fox with a Tongue Full of Stars"
    assert _repeats("The Fox with a Tongue Full of Stars", context)
    assert _repeats("Situation: the fox with a tongue", context)
    assert not _repeats("I told you the ice would not hold.", context)
    assert not _repeats("  ", context)
