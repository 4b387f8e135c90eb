"""The shared helpers every importer, embedder and page calls: one encoder cache, one upload decoder,
one presence threshold, one place that decides inline-vs-job; and no import cycle in core.curate."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from core import embeddings, inline, uploads

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- embeddings


@pytest.fixture
def counted_loads(monkeypatch):
    """Forget the loaded encoders and count the SentenceTransformer loads from here on."""
    import sentence_transformers

    real = sentence_transformers.SentenceTransformer
    loads: list[str] = []

    def counting(path, *args, **kwargs):
        loads.append(str(path))
        return real(path, *args, **kwargs)

    embeddings.forget()
    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", counting)
    yield loads
    embeddings.forget()  # the next test must not inherit an encoder loaded through the counter


def test_every_embedder_shares_one_encoder_loaded_once(counted_loads, admin):
    from core.curate import diversity, signals
    from core.pipeline import dedup
    from core.train.baselines import EmbeddingBaseline
    from tests.curate_support import add_example

    for i, text in enumerate(["I am so happy today", "I am so happy today!", "The storm frightened me"]):
        add_example(text, {"joy": 0.9} if i < 2 else {"fear": 0.8})
    assert dedup.near_duplicates(["I am so happy today", "I am so happy today!", "A storm is coming"]) == {1}
    assert signals.compute_duplicates(admin)["near_duplicates"] == 2
    assert diversity.compute_diversity(admin)["diversity_groups"] >= 1
    baseline = EmbeddingBaseline()
    cos = baseline.cosines(["I am terrified"], None, ["fear", "joy"])
    assert cos[0, 0] > cos[0, 1]
    assert len(counted_loads) == 1, counted_loads
    assert embeddings.loaded() == [str(embeddings.folder().resolve())]
    # The baseline reads with the very module the other embedders use: no second copy in memory.
    assert baseline.encoder is embeddings.encoder()[0].auto_model


def test_embed_gives_unit_rows_in_input_order_and_an_empty_matrix_for_no_text(counted_loads):
    vectors = embeddings.embed(["a cat on a mat", "stock prices fell", "a cat on the mat"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[2] > vectors[0] @ vectors[1]
    assert embeddings.embed([]).shape == (0, 384)
    assert embeddings.encoder() is embeddings.encoder(embeddings.folder())
    assert len(counted_loads) == 1


def test_the_pipelines_bf16_encoding_stays_within_a_hair_of_fp32_and_can_be_turned_off(monkeypatch):
    """precision "auto" (the pipeline's near-duplicates and context similarity) uses bfloat16 where the CPU
    has it natively; the similarities it decides on stay within 0.01 of fp32's."""
    texts = ["I can't believe you remembered my birthday!", "The storm tore the roof off our barn.",
             "I can not believe you remembered my birthday", "Fine. Whatever. Do what you want.",
             "We finally won the championship after ten years", "Why would anyone leave a dog out in the cold?"]
    exact = embeddings.embed(texts)
    fast = embeddings.embed(texts, precision="auto")
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    assert np.abs(fast @ fast.T - exact @ exact.T).max() < 0.01
    if embeddings.native_bf16_cpu():  # the bf16 path really ran here
        assert not np.array_equal(fast, exact)
    monkeypatch.setenv("EMOFORGE_ENCODER_PRECISION", "fp32")  # identical figures on every machine
    assert np.array_equal(embeddings.embed(texts, precision="auto"), exact)
    with pytest.raises(ValueError, match="auto or fp32"):
        embeddings.embed(texts, precision="int8")


# --------------------------------------------------------------------------- the upload decoder


@pytest.mark.parametrize("data, message", [
    (b"caf\xe9 au lait", "menu.txt: not UTF-8 text (byte 0xe9 at position 3); save it as UTF-8 and upload again"),
    # The position counts from the start of the file as uploaded, byte-order mark included.
    (b"\xef\xbb\xbfcaf\xe9", "menu.txt: not UTF-8 text (byte 0xe9 at position 6)"),
    (b"PK\x03\x04\x00\x00word", "menu.txt: looks like a binary file (it contains NUL bytes), not text"),
    (b"", "menu.txt: the file is empty"),
    (b"\xef\xbb\xbf \r\n\t", "menu.txt: the file is empty"),
    (b"x" * (3 * uploads.MB + 1), "menu.txt: 3.0 MB is over the 2 MB limit"),
])
def test_decoder_errors_name_the_file_and_what_is_wrong(data, message):
    with pytest.raises(uploads.UploadError) as caught:
        uploads.decode_upload("menu.txt", data, max_bytes=2 * uploads.MB)
    assert str(caught.value).startswith(message)


def test_decoder_drops_the_bom_and_unifies_newlines():
    assert uploads.decode_upload("a.txt", "\ufeffone\r\ntwo\rthree\n".encode()) == "one\ntwo\nthree\n"
    assert uploads.decode_upload("a.txt", "naïve".encode()) == "naïve"


def test_every_importer_reports_a_bad_upload_the_same_way_with_its_own_error():
    from core import corpus, taxonomy
    from core.datasets import readers

    bad = b"joy\nang\xe9r\n"
    expected = "labels.txt: not UTF-8 text (byte 0xe9 at position 7)"
    for parse, error in ((corpus.parse_file, corpus.CorpusFileError),
                         (taxonomy.parse_taxonomy_file, taxonomy.TaxonomyError)):
        with pytest.raises(error) as caught:
            parse("labels.txt", bad)
        assert str(caught.value).startswith(expected)
    with pytest.raises(readers.ImportFileError) as caught:
        readers.parse_labelled_file("labels.csv", bad)
    assert str(caught.value).startswith(expected.replace(".txt", ".csv"))
    assert issubclass(corpus.CorpusFileError, uploads.UploadError)
    assert issubclass(readers.ImportFileError, uploads.UploadError)


# --------------------------------------------------------------------------- presence threshold


def test_one_presence_threshold_reader(admin):
    from core import labels
    from core.curate import labels as current
    from core.curate.labels import current_labels
    from core.review import selection
    from tests.curate_support import add_example

    assert current.threshold is labels.threshold
    example = add_example("A mild smile", {"joy": 0.4})
    assert current_labels([example])[example].labels == ("joy",)
    labels.set_threshold(admin, 0.5)
    assert labels.threshold() == selection.presence_threshold() == 0.5
    assert current_labels([example])[example].labels == ()


# --------------------------------------------------------------------------- import cycles


def _imports(path: Path) -> set[str]:
    """Every core module a file imports, at the top or inside a function (a deferred import still ties two
    modules together)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {name for name in found if name.startswith("core.")}


def test_no_import_cycle_in_curate_or_through_the_shared_helpers():
    modules = {f"core.curate.{p.stem}": p for p in (ROOT / "core" / "curate").glob("*.py") if p.stem != "__init__"}
    modules.update({f"core.{name}": ROOT / "core" / f"{name}.py" for name in ("embeddings", "uploads", "inline")})
    graph = {name: _imports(path) & set(modules) for name, path in modules.items()}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        return any(n == target or (n not in seen and reaches(n, target, seen | {n})) for n in graph[start])

    cycles = sorted(name for name in graph if reaches(name, name, {name}))
    assert not cycles, cycles
    assert "core.curate.signals" not in graph["core.curate.diversity"]


# --------------------------------------------------------------------------- inline or job


def test_small_work_runs_now_and_large_work_becomes_a_job(admin, monkeypatch):
    from core import corpus
    from core.curate import actions
    from core.curate.filters import CurationFilter
    from core.datasets import importing, versions
    from core.jobs import list_jobs
    from tests.curate_support import add_example, goemotions_id, make_stories

    story = b"The Fox\n\nA fox found a bell in the snow and rang it all winter.\n"
    now = corpus.import_or_enqueue(admin, "Now", [("fox.txt", story)])
    assert not now.queued and now.report.stories_added == 1
    labelled = b"text,labels\nWhat a day,joy\nGo away,anger\n"
    now_set = importing.import_or_enqueue(admin, "x.csv", labelled, source="small", taxonomy_id=goemotions_id())
    assert not now_set.queued and now_set.report.examples_added == 2
    stories = make_stories(6)
    for i in range(12):
        add_example(f"Line {i}", {"joy": 0.9} if i % 2 else {"sadness": 0.7}, kind="contextual",
                    story_id=stories[i % 6])
    frozen = versions.freeze_or_enqueue(admin, "v1", CurationFilter(kinds=("contextual",)))
    assert not frozen.queued and frozen.report.size == 12
    # No ratios given: core chooses them from the frozen examples' kinds (all contextual: 90/5/5).
    assert frozen.report.split_config["ratios"] == {"train": 0.9, "dev": 0.05, "test": 0.05}
    decided = actions.decide_or_enqueue(admin, "accept", CurationFilter(kinds=("contextual",)))
    assert not decided.queued and decided.report.count == 12
    assert list_jobs(admin) == []

    monkeypatch.setattr(inline, "UPLOAD_BYTES", 10)
    monkeypatch.setattr(inline, "EXAMPLES", 5)
    queued = corpus.import_or_enqueue(admin, "Later", [("fox.txt", story), ("hen.txt", b"A hen laid an egg.")])
    assert queued.queued and len(queued.job_ids) == 2 and queued.report is None
    with pytest.raises(corpus.CorpusFileError):  # one bad file queues nothing
        corpus.import_or_enqueue(admin, "Never", [("fox.txt", story), ("bad.txt", b"\xff")])
    assert importing.import_or_enqueue(admin, "y.csv", labelled, source="big", taxonomy_id=goemotions_id()).queued
    assert versions.freeze_or_enqueue(admin, "v2", CurationFilter(kinds=("contextual",)), seed=3).queued
    bulk = actions.decide_or_enqueue(admin, "reject", CurationFilter(kinds=("contextual",)))
    assert bulk.queued and bulk.detail["matches"] == 12 and bulk.detail["batch_id"]
    kinds = sorted(j.kind for j in list_jobs(admin))
    assert kinds == ["curate_bulk", "dataset_freeze", "import_corpus", "import_corpus", "import_labelled"]


def test_export_page_freezes_with_the_default_ratios_unless_asked(admin):
    from core.datasets import versions
    from tests.curate_support import add_example, make_stories
    from tests.test_pages import open_page

    stories = make_stories(10)
    for i in range(20):
        add_example(f"Line {i}", {"joy": 0.9}, kind="contextual", story_id=stories[i % 10])
    at = open_page(admin, "export")
    at.text_input(key="exp_name").input("defaults").run()
    at.button(key="exp_freeze").click().run()
    assert not at.exception, at.exception
    assert versions.list_versions(admin)[0].split_config["ratios"] == {"train": 0.9, "dev": 0.05, "test": 0.05}
    add_example("One more", {"joy": 0.9}, kind="contextual", story_id=stories[0])  # a new content hash
    at.text_input(key="exp_name").input("chosen").run()
    at.checkbox(key="exp_custom_ratios").check().run()
    at.number_input(key="exp_ratio_train").set_value(0.5).run()
    at.number_input(key="exp_ratio_dev").set_value(0.25).run()
    at.number_input(key="exp_ratio_test").set_value(0.25).run()
    at.button(key="exp_freeze").click().run()
    assert not at.exception, at.exception
    assert versions.list_versions(admin)[0].split_config["ratios"] == {"train": 0.5, "dev": 0.25, "test": 0.25}
