"""Story corpora: file formats, all-or-nothing imports, duplicates, passages, browsing, the demo
corpus and the worker's import job.

Database tests are few and each checks a whole story, because every one pays for a fresh
migrated database; parsing and passage splitting need no database and are parametrised freely.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest
from sqlalchemy import delete, func, select, update

from core import corpus, jobs, worker
from core.auth import PermissionDenied
from core.corpus import CorpusFileError
from db.models import Corpus, Job, JobStatus, Passage, Story, Upload
from db.session import read_session, write_session


def _counts() -> tuple[int, int, int, int]:
    with read_session() as session:
        return tuple(session.scalar(select(func.count()).select_from(m)) for m in (Corpus, Story, Passage, Upload))


def _story_text(n: int, words: int = 30) -> str:
    return f"Story number {n} begins. " + " ".join(f"w{n}x{i}" for i in range(words)) + "."


MULTI_TXT = (
    "The Ferry\nMara missed the last ferry and laughed about it.\n\nShe slept on the pier.\n"
    "<EOS>\n"
    "Tomas wrote a very long opening line that runs on without any break and is certainly far more than a "
    "hundred characters long, so it cannot be a title at all.\n"
    "---\n\n"
    "***\n"
    "A one-line story with nothing after it.\n"
    "---\n"
)


# --------------------------------------------------------------------------- parsing (no database)


def test_txt_without_separators_is_one_story_titled_after_the_file():
    [story] = corpus.parse_file("uploads/the_red_kite.txt", b"\xef\xbb\xbfFirst line.\r\n\r\nSecond paragraph.\r\n")
    assert story.title == "the red kite"
    assert story.text == "First line.\n\nSecond paragraph."
    assert story.meta == {"source_file": "the_red_kite.txt", "line": 1}


def test_txt_with_separators_is_several_stories():
    stories = corpus.parse_file("tales.txt", MULTI_TXT.encode())
    assert [s.title for s in stories] == ["The Ferry", "tales #2", "tales #3"]
    assert stories[0].text == "Mara missed the last ferry and laughed about it.\n\nShe slept on the pier."
    assert stories[1].text.startswith("Tomas wrote")
    assert stories[2].text == "A one-line story with nothing after it."
    assert [s.meta["line"] for s in stories] == [1, 6, 10]


def test_csv_with_header_bom_crlf_and_quoted_newlines():
    data = (
        "\ufeffTitle,Text,Origin\r\n"
        "The Well,\"Ada looked down, afraid.\r\nThen she laughed.\",grimm\r\n"
        "\r\n"
        ",No title here.,\r\n"
    ).encode()
    stories = corpus.parse_file("set.csv", data)
    assert [(s.title, s.text) for s in stories] == [
        ("The Well", "Ada looked down, afraid.\nThen she laughed."), ("set #2", "No title here.")]
    assert stories[0].meta == {"source_file": "set.csv", "line": 2, "fields": {"origin": "grimm"}}
    assert stories[1].meta["line"] == 5


def test_jsonl_with_optional_title_and_blank_lines():
    data = b'{"title": "One", "text": "Ana won."}\n\n{"text": "Ben lost.", "id": 7}\n'
    stories = corpus.parse_file("s.jsonl", data)
    assert [(s.title, s.text, s.meta["line"]) for s in stories] == [("One", "Ana won.", 1), ("s #2", "Ben lost.", 3)]
    assert stories[1].meta["fields"] == {"id": 7}


BAD_FILES = [
    ("stories.csv", b"title,text\nA,ok\nB,also ok\nC,   \n", "stories.csv, line 4: empty text"),
    ("data.csv", b"a,b\n1,2\n", "data.csv: no 'text' column (columns: a, b)"),
    ("wide.csv", b"title,text\nA,one, two\n", "wide.csv, line 2: 3 fields but the header has 2"),
    ("only_header.csv", b"title,text\n", "only_header.csv: no stories found"),
    ("stories.jsonl", b'{"text": "fine"}\n{"text" "x"}\n',
     "stories.jsonl, line 2: not valid JSON (Expecting ':' delimiter)"),
    ("stories.jsonl", b'{"text": "fine"}\n{"text": "a" "b"}\n',
     "stories.jsonl, line 2: not valid JSON (Expecting ',' delimiter)"),
    ("list.jsonl", b'["text"]\n', "list.jsonl, line 1: expected a JSON object, got list"),
    ("notext.jsonl", b'{"text": "ok"}\n\n{"body": "x"}\n', "notext.jsonl, line 3: no 'text' field (fields: body)"),
    ("num.jsonl", b'{"text": 5}\n', "num.jsonl, line 1: 'text' must be a string, got int"),
    ("notes.txt", b"Good text.\xff more", "notes.txt: not UTF-8 text (byte 0xff at position 10)"),
    ("latin.csv", b"text\ncaf\xe9\n", "latin.csv: not UTF-8 text (byte 0xe9 at position 8)"),
    ("empty.txt", b"", "empty.txt: the file is empty"),
    ("blank.txt", b" \n\n \n", "blank.txt: the file is empty"),
    ("seps.txt", b"---\n<EOS>\n", "seps.txt: no stories found"),
    ("doc.txt", b"PK\x03\x04\x00\x00text", "doc.txt: looks like a binary file"),
    ("book.pdf", b"%PDF-1.4", "book.pdf: unsupported file type '.pdf'; supported: .txt, .csv, .jsonl"),
]


@pytest.mark.parametrize("filename, data, message", BAD_FILES, ids=[case[0] for case in BAD_FILES])
def test_bad_files_name_the_file_and_the_line(filename, data, message):
    with pytest.raises(CorpusFileError) as caught:
        corpus.parse_file(filename, data)
    assert str(caught.value).startswith(message)


def test_file_over_the_size_limit_is_refused_before_reading(monkeypatch):
    monkeypatch.setattr(corpus, "MAX_FILE_BYTES", 50 * 1024 * 1024)
    data = b"x" * int(60.2 * 1024 * 1024)
    with pytest.raises(CorpusFileError, match=r"^big\.txt: 60\.2 MB is over the 50 MB limit$"):
        corpus.parse_file("big.txt", data)


@pytest.mark.parametrize("text, max_words, expected", [
    ("One two.\n\nThree four.\n\nFive.", 10, ["One two.\n\nThree four.\n\nFive."]),
    ("One two.\n\nThree four.\n\nFive.", 4, ["One two.\n\nThree four.", "Five."]),
    ("One two.\n  \n\nThree four.", 2, ["One two.", "Three four."]),
    ("A b c. D e f? G h \"i!\" J k.", 4, ["A b c.", "D e f?", "G h \"i!\"", "J k."]),
    ("Short.\n\nA b c. D e f. G.", 4, ["Short.\n\nA b c.", "D e f. G."]),
    ("A b c d e. F g.", 3, ["A b c", "d e.", "F g."]),
    ("a b c d e f g", 3, ["a b c", "d e f", "g"]),
    ("", 5, []),
])
def test_split_passages(text, max_words, expected):
    assert corpus.split_passages(text, max_words) == expected


def test_split_passages_never_exceeds_the_limit_and_loses_no_word():
    paragraphs = [" ".join(f"p{p}w{w}." if w % 7 == 6 else f"p{p}w{w}" for w in range(n)) for p, n in
                  enumerate([5, 400, 120, 260, 90, 1000])]
    text = "\n\n".join(paragraphs)
    passages = corpus.split_passages(text)
    assert all(len(p.split()) <= 350 for p in passages)
    assert " ".join(passages).split() == text.split()
    assert len(passages) >= 6


# --------------------------------------------------------------------------- importing


def test_import_files_reads_every_format_into_one_corpus(admin):
    long_story = "\n\n".join(_story_text(i, 100) for i in range(8))  # ~830 words: three passages
    files = [
        ("tales.txt", MULTI_TXT.encode()),
        ("long.txt", long_story.encode()),
        ("set.csv", b"title,text\nThe Well,Ada looked down.\n"),
        ("more.jsonl", b'{"title": "Ben", "text": "Ben lost the race and cried."}\n'),
    ]
    report = corpus.import_files(admin, "  My   stories ", files, description="mixed")
    assert (report.corpus_name, report.stories_added, report.duplicates_skipped) == ("My stories", 6, 0)
    assert report.files == ("tales.txt", "long.txt", "set.csv", "more.jsonl")
    assert report.passages_added == 3 + 3 + 1 + 1

    [view] = corpus.list_corpora()
    assert (view.id, view.name, view.description) == (report.corpus_id, "My stories", "mixed")
    assert (view.story_count, view.passage_count) == (6, 8)
    assert view.word_count == sum(len(s.text.split()) for name, data in files for s in corpus.parse_file(name, data))
    assert view.source == "tales.txt, long.txt, set.csv, more.jsonl"

    rows, total = corpus.list_stories(report.corpus_id)
    assert total == 6
    assert [row.position for row in rows] == [0, 1, 2, 3, 4, 5]
    assert [row.title for row in rows] == ["The Ferry", "tales #2", "tales #3", "long", "The Well", "Ben"]
    assert rows[3].passage_count == 3

    detail = corpus.get_story(rows[3].id)
    assert (detail.corpus_name, detail.meta) == ("My stories", {"source_file": "long.txt", "line": 1})
    assert [p.position for p in detail.passages] == [0, 1, 2]
    assert all(p.word_count <= 350 for p in detail.passages)
    assert "\n\n".join(p.text for p in detail.passages) == long_story
    with read_session() as session:
        story = session.get(Story, rows[0].id)
        assert story.content_hash == corpus.content_hash(story.text) and len(story.content_hash) == 64
        assert story.word_count == len(story.text.split())


def test_a_bad_file_anywhere_in_an_upload_saves_nothing(admin):
    good = ("good.txt", b"A perfectly good story.")
    for filename, data, message in BAD_FILES:
        with pytest.raises(CorpusFileError, match="^" + re.escape(message)):
            corpus.import_files(admin, "Never", [good, (filename, data)])
        with pytest.raises(CorpusFileError, match="^" + re.escape(message)):
            corpus.enqueue_import(admin, "Never", filename, data)
    assert _counts() == (0, 0, 0, 0)
    with read_session() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0

    corpus.import_files(admin, "Kept", [good])
    before = _counts()
    with pytest.raises(CorpusFileError, match="^stories.csv, line 4: empty text"):
        corpus.import_files(admin, "Kept", [("more.txt", b"Another story."), BAD_FILES[0][:2]])
    assert _counts() == before


def test_duplicates_are_skipped_within_an_upload_and_across_imports(admin):
    first = corpus.import_files(admin, "Dupes", [
        ("a.jsonl", b'{"text": "Ana   won the race."}\n{"text": "Ben lost."}\n{"text": "ana won the RACE."}\n'),
    ])
    assert (first.stories_added, first.duplicates_skipped) == (2, 1)

    again = corpus.import_files(admin, "Dupes", [
        ("b.txt", b"Ben lost.\n---\nCarla found a key.\n---\nBen    LOST.\n"),
    ])
    assert (again.corpus_id, again.stories_added, again.duplicates_skipped) == (first.corpus_id, 1, 2)
    rows, total = corpus.list_stories(first.corpus_id)
    assert total == 3
    # Each import reserves one position per story in its file; a skipped story leaves its slot unused,
    # so the second file's slots are 3, 4, 5 and Carla lands on 4.
    assert [row.position for row in rows] == [0, 1, 4]
    assert corpus.list_corpora()[0].source == "a.jsonl, b.txt"

    other = corpus.import_files(admin, "Elsewhere", [("c.txt", b"Ben lost.")])
    assert (other.stories_added, other.duplicates_skipped) == (1, 0)  # duplicates count per corpus


def test_paging_and_search_happen_in_the_database(admin):
    lines = [{"title": f"Tale {i:02d}", "text": _story_text(i)} for i in range(12)]
    lines[3]["text"] = "The DRAGON slept. " + "z " * 300
    lines[7]["title"] = "Dragon's Tale"
    lines[9]["text"] = "A 100% true story about snake_case names."
    data = "\n".join(json.dumps(line) for line in lines).encode()
    corpus_id = corpus.import_files(admin, "Paged", [("p.jsonl", data)]).corpus_id

    page, total = corpus.list_stories(corpus_id, offset=10, limit=5)
    assert total == 12 and [row.title for row in page] == ["Tale 10", "Tale 11"]
    page, total = corpus.list_stories(corpus_id, offset=0, limit=5)
    assert total == 12 and [row.position for row in page] == [0, 1, 2, 3, 4]

    found, total = corpus.list_stories(corpus_id, search="  dragon ")
    assert total == 2 and [row.position for row in found] == [3, 7]
    assert found[0].preview.startswith("The DRAGON slept. z z") and found[0].preview.endswith("…")
    assert len(found[0].preview) <= 201
    assert corpus.list_stories(corpus_id, search="100%")[1] == 1
    assert corpus.list_stories(corpus_id, search="0%")[1] == 1  # '%' is a literal, not a wildcard
    assert corpus.list_stories(corpus_id, search="e_c")[1] == 1  # so is '_'
    assert corpus.list_stories(corpus_id, search="no such words")[1] == 0


def test_deletes_cascade_and_annotators_cannot_change_corpora(annotator, admin):
    text = "\n\n".join(_story_text(i, 200) for i in range(2))
    report = corpus.import_files(admin, "Doomed", [("x.txt", b"Short one.\n---\n" + text.encode())])
    corpus.import_files(admin, "Survivor", [("y.txt", b"I stay.")])
    rows, _ = corpus.list_stories(report.corpus_id)

    for attempt in (
        lambda: corpus.import_files(annotator, "No", [("z.txt", b"Nope.")]),
        lambda: corpus.enqueue_import(annotator, "No", "z.txt", b"Nope."),
        lambda: corpus.delete_story(annotator, rows[0].id),
        lambda: corpus.delete_corpus(annotator, report.corpus_id),
        lambda: corpus.import_files(None, "No", [("z.txt", b"Nope.")]),
    ):
        with pytest.raises(PermissionDenied):
            attempt()
    assert _counts() == (2, 3, 1 + 2 + 1, 0)

    corpus.delete_story(admin, rows[1].id)
    assert _counts() == (2, 2, 2, 0)
    with pytest.raises(ValueError, match="No story"):
        corpus.get_story(rows[1].id)

    corpus.delete_corpus(admin, report.corpus_id)
    assert _counts() == (1, 1, 1, 0)
    assert [view.name for view in corpus.list_corpora()] == ["Survivor"]
    with pytest.raises(ValueError, match="No corpus"):
        corpus.delete_corpus(admin, report.corpus_id)


def test_demo_corpus_loads_once(database):
    corpus_id = corpus.load_demo_corpus()
    assert corpus_id is not None
    counts = _counts()
    assert corpus.load_demo_corpus() == corpus_id
    assert _counts() == counts

    [view] = corpus.list_corpora()
    assert view.name == "Demo: EmoForge plots" and view.source == "demo"
    rows, total = corpus.list_stories(corpus_id, limit=100)
    assert 18 <= total <= 25
    assert len({row.title for row in rows}) == total
    assert all(120 <= row.word_count <= 250 for row in rows), [(r.title, r.word_count) for r in rows]


# --------------------------------------------------------------------------- the worker job


def _claim_and_run(worker_id: str, context_class: type[jobs.JobContext]) -> int:
    """A worker's loop for one job with a stand-in JobContext (to make the worker die mid-job)."""
    job_id = jobs.claim(worker_id)
    assert job_id is not None
    ctx = context_class(job_id, worker_id)
    jobs.finish(job_id, worker_id, JobStatus.succeeded, result=jobs.HANDLERS[ctx.kind](ctx))
    return job_id


def _jsonl(texts: list[str]) -> bytes:
    return "\n".join(json.dumps({"title": f"T{i}", "text": t}) for i, t in enumerate(texts)).encode()


def test_import_job_runs_end_to_end_in_batches(admin):
    corpus.import_files(admin, "Queued", [("old.txt", _story_text(99).encode())])
    texts = [_story_text(i) for i in range(5)] + [_story_text(2).upper(), _story_text(99)]
    job_id = corpus.enqueue_import(admin, "Queued", "big.jsonl", _jsonl(texts), batch_size=2)
    assert _counts()[3] == 1  # the bytes wait in Upload for the worker

    assert worker.serve(once=True, worker_id="worker-1") == 1
    job = jobs.get_job(admin, job_id)
    assert job.status == JobStatus.succeeded, job.error
    assert (job.done, job.total) == (7, 7)
    assert job.result["stories_added"] == 5 and job.result["duplicates_skipped"] == 2
    assert job.result["passages_added"] == 5
    rows, total = corpus.list_stories(job.result["corpus_id"])
    assert total == 6
    assert [row.position for row in rows] == [0, 1, 2, 3, 4, 5]
    assert [row.title for row in rows] == ["old", "T0", "T1", "T2", "T3", "T4"]
    assert _counts()[3] == 0  # the upload is deleted once imported
    assert jobs.claim("worker-1") is None


def test_import_job_resumes_after_a_crash_without_duplicates(admin):
    texts = [_story_text(i) for i in range(7)]
    job_id = corpus.enqueue_import(admin, "Resumed", "r.jsonl", _jsonl(texts), batch_size=3)

    class DiesAfterFirstBatch(jobs.JobContext):
        checks = 0

        def check_cancel(self) -> None:
            type(self).checks += 1
            if type(self).checks == 2:
                raise SystemExit("worker killed")

    with pytest.raises(SystemExit):
        _claim_and_run("worker-1", DiesAfterFirstBatch)
    assert _counts()[1] == 3  # the first batch was committed with its checkpoint

    # The dead worker's lease runs out; another worker takes the job over from the checkpoint.
    with write_session() as session:
        expired = datetime(2000, 1, 1, tzinfo=timezone.utc)
        session.execute(update(Job).where(Job.id == job_id).values(lease_until=expired))
    assert worker.serve(once=True, worker_id="worker-2") == 1

    job = jobs.get_job(admin, job_id)
    assert job.status == JobStatus.succeeded and job.attempts == 2
    assert (job.done, job.result["stories_added"], job.result["duplicates_skipped"]) == (7, 7, 0)
    rows, total = corpus.list_stories(job.result["corpus_id"])
    assert total == 7 and [row.position for row in rows] == list(range(7))
    assert [row.title for row in rows] == [f"T{i}" for i in range(7)]


def test_import_job_can_be_cancelled_and_retried(admin):
    job_id = corpus.enqueue_import(admin, "Cancelled", "c.jsonl", _jsonl([_story_text(i) for i in range(4)]),
                                   batch_size=2)
    assert jobs.claim("worker-1") == job_id
    jobs.cancel(admin, job_id)  # requested while running: honoured before the next batch
    assert worker.run_job(job_id, "worker-1", lease_seconds=60) == JobStatus.cancelled
    assert _counts()[1:] == (0, 0, 1)  # no story yet, and the upload is kept for a retry

    jobs.retry(admin, job_id)
    assert worker.serve(once=True, worker_id="worker-2") == 1
    job = jobs.get_job(admin, job_id)
    assert job.status == JobStatus.succeeded and job.result["stories_added"] == 4
    assert _counts() == (1, 4, 4, 0)


def test_import_job_fails_cleanly_when_its_upload_is_gone(admin):
    job_id = corpus.enqueue_import(admin, "Gone", "g.txt", b"A story.")
    with write_session() as session:
        session.execute(delete(Upload))
    worker.serve(once=True, worker_id="worker-1")
    job = jobs.get_job(admin, job_id)
    assert job.status == JobStatus.failed and "upload it again" in job.error
    assert _counts() == (0, 0, 0, 0)


# --------------------------------------------------------------------------- FairytaleQA and WikiPlots layouts


def test_fairytaleqa_section_csv_is_one_story_with_its_sections_as_passages(admin):
    from tests.conftest import shared_data

    folder = shared_data("fairytaleqa", "data-by-origin", "section-stories", "andersen-fairybook")
    path = folder / "Snow-man-story.csv"
    stories = corpus.parse_file(path.name, path.read_bytes())
    assert len(stories) == 1
    story = stories[0]
    assert story.title == "Snow man story" and len(story.sections) >= 3
    assert story.text.startswith('"It is so delightfully cold,"')
    report = corpus.import_files(admin, "Fairy tales", [(path.name, path.read_bytes())])
    assert report.stories_added == 1 and report.passages_added >= len(story.sections)
    detail = corpus.get_story(corpus.list_stories(report.corpus_id)[0][0].id)
    assert detail.passages[0].text.startswith('"It is so delightfully cold,"')


def test_wikiplots_pair_reads_plots_with_their_titles(admin):
    plots = b"A farmer loses his dog.\nHe searches the hills.\n<EOS>\nTwo sisters open a bakery.\n<EOS>\n"
    titles = b"The Lost Dog\nSweet Sisters\n"
    stories = corpus.parse_files([("titles", titles), ("plots", plots)])
    assert [(s.title, s.text) for s in stories] == [
        ("The Lost Dog", "A farmer loses his dog.\nHe searches the hills."), ("Sweet Sisters", "Two sisters open a bakery.")]
    report = corpus.import_files(admin, "WikiPlots sample", [("plots.txt", plots), ("titles.txt", titles)])
    assert report.stories_added == 2


def test_wikiplots_pair_out_of_step_is_refused_and_saves_nothing(admin):
    plots = b"One.\n<EOS>\nTwo.\n<EOS>\nThree.\n<EOS>\n"
    with pytest.raises(CorpusFileError, match=r"titles has 2 titles but plots has 3 plots"):
        corpus.import_files(admin, "Broken", [("plots", plots), ("titles", b"A\nB\n")])
    assert not [c for c in corpus.list_corpora() if c.name == "Broken"]


def test_wikiplots_pair_imports_through_the_worker(admin):
    plots = "".join(f"Plot number {i} happens here.\n<EOS>\n" for i in range(30)).encode()
    titles = "".join(f"Title {i}\n" for i in range(30)).encode()
    corpus.enqueue_import(admin, "Big plots", "plots", plots, companion=("titles", titles), batch_size=7)
    assert worker.serve(once=True, lease_seconds=30) == 1
    target = next(c for c in corpus.list_corpora() if c.name == "Big plots")
    rows, total = corpus.list_stories(target.id, limit=100)
    assert total == 30 and rows[0].title == "Title 0"
    with read_session() as session:
        assert session.scalar(select(func.count()).select_from(Upload)) == 0
