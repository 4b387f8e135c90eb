"""Datasets: import of labelled sets, frozen versions with grouped stratified splits, exports and cards."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from core import jobs, worker
from core.auth import PermissionDenied
from core.curate import actions
from core.curate.filters import CurationFilter
from core.datasets import export, importing, readers, versions
from core.datasets.readers import ImportFileError
from core.datasets.splits import assign_splits, group_ids
from db.models import DatasetMember, Example, Export, JobStatus, Signal, Suggestion, Taxonomy
from db.session import read_session, write_session
from tests.conftest import shared_data
from tests.curate_support import add_example, add_review, goemotions_id, make_stories

LABELS = ["joy", "sadness", "anger", "fear", "love", "surprise", "grief", "pride"]


def taxonomy_id(name: str = "GoEmotions") -> int:
    goemotions_id()
    with read_session() as session:
        return session.scalar(select(Taxonomy.id).where(Taxonomy.name == name))


def example_count() -> int:
    with read_session() as session:
        return int(session.scalar(select(func.count(Example.id))))


# --------------------------------------------------------------------------- import


def test_import_goemotions_dev(admin):
    path = shared_data("goemotions", "dev.tsv")
    report = importing.import_file(admin, path.name, path.read_bytes(), source="goemotions-dev",
                                   taxonomy_id=taxonomy_id(), licence="apache-2.0")
    assert report.examples_added + report.duplicates_skipped == 5426
    assert 0 < report.duplicates_skipped < 30 and report.unknown_labels == {} and report.unlabelled == 0
    assert report.label_counts["neutral"] > 1500 and len(report.label_counts) == 28
    with read_session() as session:
        first = session.scalar(select(Example).order_by(Example.id).limit(1))
        assert (first.kind.value, first.source, first.status) == ("imported", "goemotions-dev", "accepted")
        assert first.text == "Is this in New Orleans?? I really feel like this is New Orleans."
        assert first.meta["ref"] == "edgurhb" and first.meta["split"] == "dev"
        agents = set(session.scalars(select(Suggestion.agent).distinct()))
        assert agents == {"gold:goemotions-dev"}
    again = importing.import_file(admin, path.name, path.read_bytes(), source="goemotions-dev",
                                  taxonomy_id=taxonomy_id())
    assert again.examples_added == 0 and again.duplicates_skipped == 5426  # de-duplicated on import


def test_import_maps_onto_another_taxonomy_and_reports_unknown_labels(admin):
    data = b"text,labels\nSo annoying!,annoyance\nI love it,\"love, happiness\"\nWhat?,\"bewilderment\"\n"
    report = importing.import_file(admin, "small.csv", data, source="small", taxonomy_id=taxonomy_id("Ekman"))
    assert report.examples_added == 3
    assert report.label_counts == {"anger": 1, "joy": 1}  # grouping annoyance->anger, love->joy
    assert report.unknown_labels == {"happiness": 1, "bewilderment": 1}
    assert report.unlabelled == 1 and "unknown labels left out: " in report.summary()


def test_generic_csv_tsv_and_jsonl_readers():
    binary = b"id,text,joy,anger\n1,Yay,1,0\n2,Grr,0,1\n3,Both?,1,1\n"
    records = readers.parse_labelled_file("b.csv", binary)
    assert [(r.text, r.labels, r.ref) for r in records] == [("Yay", ("joy",), "1"), ("Grr", ("anger",), "2"),
                                                             ("Both?", ("joy", "anger"), "3")]
    semicolons = b"text;label_name\ni feel awful;sadness\n"
    assert readers.parse_labelled_file("emotion.csv", semicolons)[0].labels == ("sadness",)
    tsv = b"ID\tTweet\tanger\tjoy\n2017-1\tso mad\t1\t0\n"
    assert readers.parse_labelled_file("train.tsv", tsv)[0].labels == ("anger",)
    assert readers.parse_labelled_file("train.tsv", tsv)[0].split == "train"
    jsonl = b'{"text": "hi", "labels": ["joy"], "context": "A party.", "split": "validation"}\n\n' \
            b'{"text": "no", "label": "anger"}\n'
    records = readers.parse_labelled_file("x.jsonl", jsonl)
    assert [(r.text, r.labels, r.context, r.split) for r in records] == [("hi", ("joy",), "A party.", "dev"),
                                                                        ("no", ("anger",), None, "")]


@pytest.mark.parametrize("name, data, message", [
    ("dev.tsv", b"fine\t27\tid1\nbroken line without tabs\n", "dev.tsv, line 2: expected 3 tab-separated"),
    ("dev.tsv", b"fine\t27\tid1\nbad id\t28\tid2\n", "dev.tsv, line 2: label id '28'"),
    ("x.jsonl", b'{"text": "a", "labels": ["joy"]}\n{"text": "b", "labels": \n', "x.jsonl, line 2: not valid JSON"),
    ("x.jsonl", b'{"text": "", "labels": ["joy"]}\n', "x.jsonl, line 1: no text"),
    ("x.jsonl", b'{"text": "a"}\n', "x.jsonl, line 1: no label field"),
    ("x.csv", b"text,joy\nhi,maybe\n", "x.csv, line 2: column 'joy' should be 0 or 1"),
    ("x.csv", b"words,joy\nhi,1\n", "x.csv: no text column"),
    ("x.csv", b"text,labels\nhi,joy,extra\n", "x.csv, line 2: 3 fields but the header has 2"),
    ("x.csv", b"\xff\xfe t\x00e\x00", "x.csv: not UTF-8"),
    ("x.csv", b"   \n", "x.csv: the file is empty"),
    ("x.docx", b"text", "unsupported file type"),
])
def test_bad_files_get_clear_errors_and_save_nothing(admin, name, data, message):
    with pytest.raises(ImportFileError) as error:
        importing.import_file(admin, name, data, source="bad", taxonomy_id=taxonomy_id())
    assert message in str(error.value)
    assert example_count() == 0


def test_import_needs_an_admin_and_a_name(admin, annotator):
    with pytest.raises(PermissionDenied):
        importing.import_file(annotator, "x.csv", b"text,labels\nhi,joy\n", source="s", taxonomy_id=taxonomy_id())
    with pytest.raises(ImportFileError, match="needs a name"):
        importing.import_file(admin, "x.csv", b"text,labels\nhi,joy\n", source="  ", taxonomy_id=taxonomy_id())


def test_evaluation_set_gets_its_own_version_and_stays_out_of_training_sets(admin):
    add_example("A generated line.", {"joy": 0.9})
    data = b"text\tlabels\tsplit\nheld out one\tjoy\ttest\nheld out two\tfear\tvalidation\n"
    report = importing.import_file(admin, "eval.tsv", data, source="eval", taxonomy_id=taxonomy_id(),
                                   evaluation=True)
    assert report.version_id is not None
    version = versions.get_version(admin, report.version_id)
    assert version.is_evaluation_set and version.split_counts == {"train": 0, "dev": 1, "test": 1}
    frozen = versions.freeze(admin, "training")
    assert frozen.size == 1  # the evaluation examples are not frozen into a training set by default


def test_import_job_through_the_worker(admin):
    data = b'{"text": "hi", "labels": ["joy"]}\n{"text": "bye", "labels": ["sadness"]}\n'
    job_id = importing.enqueue_file(admin, "x.jsonl", data, source="queued", taxonomy_id=taxonomy_id())
    with pytest.raises(ImportFileError):  # checked before it is queued
        importing.enqueue_file(admin, "x.jsonl", b"{", source="queued", taxonomy_id=taxonomy_id())
    assert worker.serve(once=True) == 1
    job = jobs.get_job(admin, job_id)
    assert job.status == JobStatus.succeeded, job.error
    assert job.result["examples_added"] == 2 and importing.imported_sources() == [("queued", 2)]


# --------------------------------------------------------------------------- splits


def synthetic_examples(n_stories: int = 120, per_story: int = 10, seed: int = 0) -> list[int]:
    """Examples in stories, with skewed multi-label teacher scores; some near-duplicate clusters."""
    rng = np.random.default_rng(seed)
    weights = np.array([1 / (i + 1) for i in range(len(LABELS))])
    weights /= weights.sum()
    stories = make_stories(n_stories)
    ids = []
    for s, story in enumerate(stories):
        for k in range(per_story):
            chosen = rng.choice(len(LABELS), size=rng.integers(1, 3), replace=False, p=weights)
            ids.append(add_example(f"story {s} line {k}", {LABELS[j]: 0.8 for j in chosen}, story_id=story))
    # Near-duplicate clusters spanning stories: 3 across stories 0, 50, 100 and so on.
    with write_session() as session:
        for c in range(20):
            for s in (c, c + 40, c + 80):
                session.add(Signal(example_id=ids[s * per_story], kind="near_dup_cluster", value=1000 + c))
    return ids


def test_group_ids_join_examples_transitively():
    groups = group_ids([[("story", 1)], [("story", 1), ("dup", 9)], [("dup", 9)], [("story", 2)], []])
    assert groups[0] == groups[1] == groups[2] and len({groups[0], groups[3], groups[4]}) == 3


def test_splits_keep_stories_and_clusters_whole_and_label_shares_close(admin):
    synthetic_examples()
    version = versions.freeze(admin, "synthetic", seed=7)
    assert version.size == 1200 and version.split_config["ratios"] == {"train": 0.8, "dev": 0.1, "test": 0.1}
    with read_session() as session:
        rows = session.execute(select(Example.id, Example.story_id, DatasetMember.split, DatasetMember.labels)
                               .join(DatasetMember, DatasetMember.example_id == Example.id)).tuples().all()
        clusters = dict(session.execute(select(Signal.example_id, Signal.value)).tuples().all())
    split_of = {i: split for i, _, split, _ in rows}
    by_story: dict[int, set] = {}
    for i, story, split, _ in rows:
        by_story.setdefault(story, set()).add(split)
    assert all(len(splits) == 1 for splits in by_story.values())  # no story spans two splits
    by_cluster: dict[float, set] = {}
    for i, value in clusters.items():
        by_cluster.setdefault(value, set()).add(split_of[i])
    assert all(len(splits) == 1 for splits in by_cluster.values())  # nor a near-duplicate cluster
    sizes = Counter(split for _, _, split, _ in rows)
    assert abs(sizes["test"] / 1200 - 0.1) <= 0.03 and abs(sizes["dev"] / 1200 - 0.1) <= 0.03
    overall = Counter(label for *_, labels in rows for label in labels)
    for split in ("train", "dev", "test"):
        in_split = Counter(label for _, _, s, labels in rows if s == split for label in labels)
        for label, n in overall.items():
            # Stated bound: each label's share within a split stays within 0.05 of its overall share.
            assert abs(in_split[label] / sizes[split] - n / 1200) <= 0.05, (split, label)


def test_splits_are_seeded_and_contextual_defaults_to_90_5_5():
    labels = [["joy"], ["fear"], ["joy", "fear"], []] * 250
    first = assign_splits(labels, seed=3)
    assert first == assign_splits(labels, seed=3) and first != assign_splits(labels, seed=4)
    counts = Counter(first)
    assert counts == {"train": 800, "dev": 100, "test": 100}
    from core.datasets.splits import default_ratios
    assert default_ratios({"contextual"}) == {"train": 0.9, "dev": 0.05, "test": 0.05}
    assert default_ratios({"contextual", "contextless"})["train"] == 0.8
    with pytest.raises(ValueError, match="unknown split"):
        assign_splits(labels, ratios={"train": 0.8, "holdout": 0.2})


def test_versions_are_immutable_and_hashed(admin):
    ids = [add_example(f"line {i}", {"joy": 0.9} if i % 2 else {"fear": 0.7}) for i in range(20)]
    first = versions.freeze(admin, "v1", CurationFilter(labels=("joy",)))
    again = versions.freeze(admin, "v1 again", CurationFilter(labels=("joy",)))
    assert again.existed and again.id == first.id and first.size == 10
    actions.decide(admin, "relabel", example_ids=[ids[1]], labels=["anger"])
    with read_session() as session:
        frozen = session.get(DatasetMember, (first.id, ids[1]))
        assert frozen.labels == ["joy"] and frozen.scores == {"joy": 0.9}  # later curation leaves it alone
    with pytest.raises(versions.VersionError, match="nothing to freeze"):
        versions.freeze(admin, "none", CurationFilter(labels=("grief",)))
    actions.decide(admin, "reject", example_ids=ids[:4])
    assert versions.freeze(admin, "all", CurationFilter()).size == 16  # rejected ones stay out


# --------------------------------------------------------------------------- export


def exported_records(folder: Path, fmt: str) -> set[tuple[str, tuple[str, ...], str]]:
    """(text, labels, split) of every exported row, read back with the importers."""
    out = set()
    if fmt == "hf_datasets":
        records = readers.read_hf_folder(folder / "hf_datasets")
    else:
        suffix = {"jsonl": "jsonl", "csv": "csv", "goemotions_tsv": "tsv"}[fmt]
        records = []
        names = [n for n, _ in __import__("core.taxonomy", fromlist=["x"]).GOEMOTIONS_LABELS]
        for path in sorted((folder / fmt).glob(f"*.{suffix}")):
            fmt_name = "goemotions" if fmt == "goemotions_tsv" else "auto"
            records += readers.parse_labelled_file(path.name, path.read_bytes(), fmt_name, label_names=names)
    for r in records:
        out.add((r.text, tuple(sorted(r.labels)), r.split))
    return out


def test_export_then_import_gives_the_same_examples_and_labels(admin, tmp_path):
    stories = make_stories(30)
    expected = set()
    for i in range(90):
        scores = {LABELS[i % 5]: 0.9, LABELS[(i * 7) % 8]: 0.4}
        text = f'Line {i}, with "quotes",\ttabs and\nnewlines' if i % 10 == 0 else f"Line {i}"
        if i % 10 == 5:  # spreadsheet formulas: escaped in the CSV and TSV files, restored on import
            text = [f"=HYPERLINK(\"http://x\") {i}", f"-2+3 {i}", f"'=already quoted {i}", f"@SUM(A1) {i}",
                    f"+{i}"][i // 20]
        add_example(text, scores, story_id=stories[i % 30])
    version = versions.freeze(admin, "round trip", licence="cc-by-4.0")
    result = export.export_version(admin, version.id, tmp_path / "out")
    with read_session() as session:
        for example_id, split, labels in session.execute(select(
                DatasetMember.example_id, DatasetMember.split, DatasetMember.labels)).tuples():
            text = session.get(Example, example_id).text
            expected.add((text, tuple(sorted(labels)), split))
    for fmt in ("jsonl", "csv", "hf_datasets", "goemotions_tsv"):
        assert exported_records(tmp_path / "out", fmt) == expected, fmt

    # And through the database: importing the JSONL export as a new source gives the same pairs.
    jsonl = b"".join((tmp_path / "out" / "jsonl" / f"{s}.jsonl").read_bytes() for s in ("train", "dev", "test")
                     if (tmp_path / "out" / "jsonl" / f"{s}.jsonl").exists())
    report = importing.import_file(admin, "all.jsonl", jsonl, source="re-import", taxonomy_id=taxonomy_id())
    assert report.examples_added == 90 and report.unknown_labels == {}
    reimported = versions.freeze(admin, "re", CurationFilter(sources=("re-import",)))
    with read_session() as session:
        got = {(session.get(Example, e).text, tuple(sorted(l))) for e, l in session.execute(
            select(DatasetMember.example_id, DatasetMember.labels).where(
                DatasetMember.version_id == reimported.id)).tuples()}
    assert got == {(t, l) for t, l, _ in expected}
    assert result.rows == 90 and Path(result.zip_path).is_file()


def test_exported_datasets_folder_and_parquet_load_with_their_libraries(admin, tmp_path):
    from datasets import load_from_disk

    story = make_stories(1)[0]
    for i in range(12):
        add_example(f"Utterance {i}", {"joy": 0.9, "love": 0.5} if i % 2 else {"fear": 0.6},
                    kind="contextual" if i % 3 else "contextless", context=f"Context {i}", story_id=story if i < 6 else None)
    version = versions.freeze(admin, "loadable")
    export.export_version(admin, version.id, tmp_path / "out", make_zip=False)
    loaded = load_from_disk(str(tmp_path / "out" / "hf_datasets"))
    total = sum(len(loaded[s]) for s in loaded)
    assert total == 12 and set(loaded) <= {"train", "validation", "test"}
    train = loaded["train"]
    names = train.features["labels"].feature.names
    assert names[17] == "joy" and len(names) == 28
    row = next(r for s in loaded for r in loaded[s] if r["text"] == "Utterance 1")
    assert sorted(names[i] for i in row["labels"]) == ["joy", "love"] and row["context"] == "Context 1"
    assert row["kind"] == "contextual" and row["story_id"] == story
    frames = [pd.read_parquet(p) for p in sorted((tmp_path / "out" / "parquet").glob("*.parquet"))]
    frame = pd.concat(frames)
    assert len(frame) == 12 and set(frame.columns) >= {"text", "context", "labels", "scores", "split"}
    one = frame[frame["text"] == "Utterance 3"].iloc[0]
    assert sorted(one["labels"]) == ["joy", "love"]
    assert {k: v for k, v in one["scores"].items() if v is not None} == {"joy": 0.9, "love": 0.5}


def test_dataset_card_lists_taxonomy_counts_review_and_licence(admin, tmp_path):
    ids = [add_example(f"Text {i}", {"joy": 0.9} if i < 6 else {"fear": 0.8}) for i in range(10)]
    add_review(ids[0], "r1", labels=["joy"], rating=5)
    add_review(ids[0], "r2", labels=["joy"], rating=4)
    add_review(ids[6], "r1", labels=["fear"], rating=3)
    add_review(ids[6], "r2", labels=["sadness"], rating=3)
    version = versions.freeze(admin, "carded", licence="cc-by-4.0", description="Ten lines for a test.")
    export.export_version(admin, version.id, tmp_path / "out", formats=("jsonl",), make_zip=False)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "license: cc-by-4.0" in card and "# carded" in card and "Ten lines for a test." in card
    assert "GoEmotions (28 labels" in card and "| 17 | joy |" in card
    assert "Submitted responses: 8 from 2 reviewer(s) on 2 examples" in card
    assert "Mean ratings: quality 3.75" in card
    assert "Label verification by two or more reviewers: 2 examples, Krippendorff's alpha" in card
    assert "mean pairwise Jaccard 0.5" in card
    split_rows = [line for line in card.splitlines() if line.startswith("| train |")]
    assert split_rows and "No generated examples" in card


def test_export_job_writes_a_zip_and_records_exports(admin):
    for i in range(10):
        add_example(f"Job line {i}", {"joy": 0.9})
    version = versions.freeze(admin, "queued export")
    job_id = export.enqueue_export(admin, version.id, ("jsonl", "parquet"))
    assert worker.serve(once=True) == 1
    job = jobs.get_job(admin, job_id)
    assert job.status == JobStatus.succeeded, job.error
    assert (job.done, job.total) == (3, 3) and job.result["rows"] == 10
    listed = export.list_exports(admin, version.id)
    assert sorted(e.format for e in listed) == ["jsonl", "parquet", "zip"]
    zip_export = next(e for e in listed if e.format == "zip")
    import zipfile
    with zipfile.ZipFile(export.zip_file(admin, zip_export.id)) as archive:
        assert {"README.md", "jsonl/train.jsonl", "parquet/train.parquet"} <= set(archive.namelist())
    with pytest.raises(export.ExportError):
        export.enqueue_export(admin, version.id, ("docx",))
    with read_session() as session:
        assert session.scalar(select(func.count(Export.id))) == 3


def test_cli_export_writes_a_folder(admin, tmp_path, monkeypatch, capsys):
    from core import cli

    for i in range(5):
        add_example(f"Cli line {i}", {"joy": 0.9})
    version = versions.freeze(admin, "cli")
    monkeypatch.setenv("EMOFORGE_PASSWORD", "admin-pass-123")
    code = cli.main(["--user", "admin", "export", str(version.id), "--out", str(tmp_path / "cli"),
                     "--formats", "jsonl,goemotions_tsv"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "cli" / "jsonl" / "train.jsonl").exists() and (tmp_path / "cli" / "README.md").exists()
    assert "5 rows" in capsys.readouterr().out
    assert cli.main(["--user", "admin", "export", "999", "--out", str(tmp_path / "x")]) == 2


def test_freeze_job_for_large_selections(admin, monkeypatch):
    for i in range(6):
        add_example(f"Queued line {i}", {"joy": 0.9})
    selection = CurationFilter(labels=("joy",))
    assert versions.selection_size(admin, selection) == 6
    job_id = versions.enqueue_freeze(admin, "queued", selection, seed=5, licence="mit")
    with pytest.raises(ValueError, match="unknown split"):
        versions.enqueue_freeze(admin, "bad", selection, ratios={"holdout": 1.0})
    assert worker.serve(once=True) == 1
    job = jobs.get_job(admin, job_id)
    assert job.status == JobStatus.succeeded, job.error
    version = versions.get_version(admin, job.result["version_id"])
    assert version.size == 6 and version.split_config["seed"] == 5 and version.created_by == "admin"
    again = versions.enqueue_freeze(admin, "queued again", selection, seed=5, licence="mit")
    worker.serve(once=True)
    assert jobs.get_job(admin, again).result == {**job.result, "existed": True}


def test_card_warns_when_one_story_leaves_dev_and_test_empty(admin, tmp_path):
    [story] = make_stories(1)
    for i in range(8):
        add_example(f"Line {i} of the only story", {"joy": 0.9}, story_id=story)
    version = versions.freeze(admin, "one story")
    assert version.split_counts.get("train") == 8 and not version.split_counts.get("dev")
    export.export_version(admin, version.id, tmp_path / "out", formats=("jsonl",), make_zip=False)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "**Warning:** dev and test are empty although asked for" in card


def test_export_links_round_trip_into_pandas_and_datasets(admin, tmp_path):
    """Parent id, variant, original utterance, raw and cleaned context, character, target, OOT names and
    scores as a label -> score mapping, in every format."""
    from datasets import load_from_disk

    from db.models import Character, Passage, Story
    from db.session import write_session

    story_id = make_stories(1)[0]
    with write_session() as session:
        passage_id = session.scalar(select(Passage.id).where(Passage.story_id == story_id))
        if passage_id is None:
            passage = Passage(story_id=story_id, position=0, text="A short plot.")
            session.add(passage)
            session.flush()
            passage_id = passage.id
        character = Character(story_id=story_id, passage_id=passage_id, name="Mira", description="a lighthouse keeper")
        session.add(character)
        session.flush()
        character_id = character.id
    parent = add_example("The lamp is out again and nobody told me.", {"anger": 0.7, "annoyance": 0.4},
                         oot={"irritation": 0.5}, story_id=story_id, character_id=character_id, target_emotion="anger")
    original = add_example("The lamp is out again and nobody told me.", {"anger": 0.7, "annoyance": 0.4},
                           kind="contextual", context="The ship came in dark.", raw_context="The angry ship came in dark.",
                           parent_id=parent, character_id=character_id, story_id=story_id, target_emotion="anger",
                           meta={"variant": "original"})
    rewritten = add_example("So the lamp is out. Again.", {"anger": 0.7, "annoyance": 0.4}, kind="contextual",
                            context="The ship came in dark.", raw_context="The angry ship came in dark.",
                            parent_id=parent, character_id=character_id, story_id=story_id, meta={"variant": "rewritten"})
    version = versions.freeze(admin, "linked")
    export.export_version(admin, version.id, tmp_path / "out", make_zip=False)
    frame = pd.concat([pd.read_parquet(p) for p in (tmp_path / "out" / "parquet").glob("*.parquet")]).set_index("id")
    loaded = load_from_disk(str(tmp_path / "out" / "hf_datasets"))
    hf = pd.concat([loaded[s].to_pandas() for s in loaded]).set_index("id")
    jsonl = pd.concat([pd.read_json(p, lines=True) for p in (tmp_path / "out" / "jsonl").glob("*.jsonl")]).set_index("id")
    for table in (frame, hf, jsonl):
        assert table.loc[parent, "variant"] == "contextless" and pd.isna(table.loc[parent, "parent_id"])
        assert table.loc[original, "variant"] == "original+context" and table.loc[original, "parent_id"] == parent
        assert table.loc[rewritten, "variant"] == "rewritten+context" and table.loc[rewritten, "parent_id"] == parent
        assert table.loc[rewritten, "original_utterance"] == "The lamp is out again and nobody told me."
        assert table.loc[original, "original_utterance"] == table.loc[original, "text"]
        assert table.loc[rewritten, "raw_context"] == "The angry ship came in dark."
        assert table.loc[rewritten, "context"] == "The ship came in dark."
        assert table.loc[rewritten, "character_name"] == "Mira"
        assert table.loc[rewritten, "character_description"] == "a lighthouse keeper"
        assert table.loc[parent, "target_emotion"] == "anger" and table.loc[rewritten, "target_emotion"] == ""
        assert list(table.loc[parent, "oot_names"]) == ["irritation"]
        scores = {k: v for k, v in table.loc[rewritten, "scores"].items() if v is not None and not pd.isna(v)}
        assert scores == pytest.approx({"anger": 0.7, "annoyance": 0.4})
    assert isinstance(hf.loc[parent, "scores"], dict) and len(hf.loc[parent, "scores"]) == 28
    csv_frame = pd.concat([pd.read_csv(p) for p in (tmp_path / "out" / "csv").glob("*.csv")]).set_index("id")
    assert json.loads(csv_frame.loc[rewritten, "scores"]) == pytest.approx({"anger": 0.7, "annoyance": 0.4})
    assert csv_frame.loc[parent, "oot_names"] == "irritation"
    card = (tmp_path / "out" / "README.md").read_text()
    assert "Rebuilding each variant" in card and "rewritten+context" in card
