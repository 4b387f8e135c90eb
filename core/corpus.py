"""Story corpora: reading uploaded files, splitting stories into passages, storing and browsing them.

An upload is all or nothing: every file is parsed and checked before anything is written, and a
bad file is reported by name and line. Large files go through the worker (`enqueue_import`),
which writes in batches that resume where they stopped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePath
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import inline, jobs
from core.auth import Actor, require_admin
from core.uploads import UploadError, decode_upload
from db.models import Corpus, Passage, Story, Upload
from db.session import read_session, write_session

MAX_FILE_BYTES = 50 * 1024 * 1024
SUPPORTED_EXTENSIONS = (".txt", ".csv", ".jsonl")
STORY_SEPARATORS = frozenset({"<EOS>", "---", "***"})
MAX_HEADING_CHARS = 100
MAX_TITLE_CHARS = 500  # Story.title column
MAX_CORPUS_NAME_CHARS = 200  # Corpus.name column
MAX_SOURCE_CHARS = 255  # Corpus.source column
DEFAULT_PASSAGE_WORDS = 350
DEFAULT_JOB_BATCH = 200
PREVIEW_CHARS = 200
HASH_LOOKUP_CHUNK = 500  # keeps `IN (...)` lists well under every backend's parameter limit

DEMO_CORPUS_NAME = "Demo: EmoForge plots"
DEMO_CORPUS_FILE = Path(__file__).resolve().parent / "demo_corpus" / "plots.jsonl"


class CorpusFileError(UploadError):
    """An uploaded file that cannot be imported; the message names the file and, where it can, the line."""


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class StoryIn:
    """A story read from a file, before it is stored."""

    title: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)
    sections: tuple[str, ...] = ()  # given sections (FairytaleQA) become the passages


@dataclass(frozen=True)
class ImportReport:
    corpus_id: int
    corpus_name: str
    stories_added: int
    duplicates_skipped: int
    passages_added: int
    files: tuple[str, ...]

    def summary(self) -> str:
        return (f"{_count(self.stories_added, 'story', 'stories')} added, "
                f"{_count(self.duplicates_skipped, 'duplicate')} skipped, "
                f"{_count(self.passages_added, 'passage')}")


def _count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n:,} {singular if n == 1 else plural or singular + 's'}"


@dataclass(frozen=True)
class CorpusView:
    id: int
    name: str
    description: str
    source: str
    story_count: int
    passage_count: int
    word_count: int
    created_at: datetime


@dataclass(frozen=True)
class StoryRow:
    id: int
    position: int
    title: str
    word_count: int
    passage_count: int
    preview: str


@dataclass(frozen=True)
class PassageView:
    id: int
    position: int
    text: str
    word_count: int


@dataclass(frozen=True)
class StoryDetail:
    id: int
    corpus_id: int
    corpus_name: str
    position: int
    title: str
    text: str
    word_count: int
    meta: dict[str, Any]
    passages: tuple[PassageView, ...]


# --------------------------------------------------------------------------- reading files


def parse_file(filename: str, data: bytes) -> list[StoryIn]:
    """The stories in one uploaded file (.txt, .csv or .jsonl), or CorpusFileError saying what is wrong."""
    name = PurePath(filename).name or "file"
    suffix = PurePath(name).suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise CorpusFileError(
            f"{name}: unsupported file type {suffix or '(no extension)'!r}; "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    text = _decode(name, data, MAX_FILE_BYTES)
    stories = {".txt": _parse_txt, ".csv": _parse_csv, ".jsonl": _parse_jsonl}[suffix](name, text)
    if not stories:
        raise CorpusFileError(f"{name}: no stories found")
    return stories


WIKIPLOTS_NAMES = ("plots", "titles")


def _stem(filename: str) -> str:
    path = PurePath(filename)
    return path.stem.lower() if path.suffix.lower() in ("", ".txt") else path.name.lower()


def is_wikiplots_pair(files: list[tuple[str, bytes]]) -> bool:
    return sorted(_stem(name) for name, _ in files) == sorted(WIKIPLOTS_NAMES)


def parse_files(files: list[tuple[str, bytes]]) -> list[StoryIn]:
    """The stories of several uploads: the WikiPlots pair (`plots` + `titles`) is read as one source."""
    if is_wikiplots_pair(files):
        by_stem = {_stem(name): (name, data) for name, data in files}
        return parse_wikiplots(by_stem["plots"], by_stem["titles"])
    return [story for filename, data in files for story in parse_file(filename, data)]


def parse_wikiplots(plots: tuple[str, bytes], titles: tuple[str, bytes]) -> list[StoryIn]:
    """WikiPlots: a plots file with stories separated by `<EOS>` lines, and a titles file, one per line."""
    (plots_name, plots_data), (titles_name, titles_data) = plots, titles
    for name, data in (plots, titles):
        if len(data) > MAX_FILE_BYTES:
            raise CorpusFileError(f"{name}: {len(data) / 1024 / 1024:.1f} MB is over the "
                                  f"{MAX_FILE_BYTES // 1024 // 1024} MB limit (split it, keeping the pairs in step)")
    chunks: list[tuple[int, str]] = []
    current: list[str] = []
    start = 1
    for number, line in enumerate(_decode(plots_name, plots_data).split("\n"), start=1):
        if line.strip() == "<EOS>":
            chunks.append((start, "\n".join(current).strip()))
            current, start = [], number + 1
        else:
            current.append(line)
    if "\n".join(current).strip():
        chunks.append((start, "\n".join(current).strip()))
    names = [line.strip() for line in _decode(titles_name, titles_data).split("\n")]
    while names and not names[-1]:
        names.pop()
    if len(names) != len(chunks):
        raise CorpusFileError(f"{titles_name} has {len(names)} titles but {plots_name} has {len(chunks)} plots "
                              "(separated by <EOS> lines): the two files must be in step")
    stories = []
    for index, ((line, body), title) in enumerate(zip(chunks, names), start=1):
        if not body:
            raise CorpusFileError(f"{plots_name}, line {line}: plot {index} ({title or 'untitled'}) is empty")
        stories.append(StoryIn((title or f"plot {index}")[:MAX_TITLE_CHARS], body,
                               {"source_file": plots_name, "line": line, "title_line": index}))
    return stories


def _decode(name: str, data: bytes, max_bytes: int | None = None) -> str:
    return decode_upload(name, data, max_bytes=max_bytes, error=CorpusFileError)


def _parse_txt(name: str, text: str) -> list[StoryIn]:
    chunks = _split_on_separators(text)
    stem = PurePath(name).stem.replace("_", " ").strip() or name
    if len(chunks) == 1:
        start_line, body = chunks[0]
        return [StoryIn(stem[:MAX_TITLE_CHARS], body, {"source_file": name, "line": start_line})]
    stories = []
    for number, (start_line, body) in enumerate(chunks, start=1):
        title, body = _heading_and_body(body, default=f"{stem} #{number}")
        stories.append(StoryIn(title, body, {"source_file": name, "line": start_line}))
    return stories


def _split_on_separators(text: str) -> list[tuple[int, str]]:
    """(first line number, stripped text) of each non-empty chunk between separator lines."""
    chunks: list[tuple[int, str]] = []
    current: list[str] = []
    start = 1
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip() in STORY_SEPARATORS:
            _keep_chunk(chunks, start, current)
            current, start = [], number + 1
        else:
            current.append(line)
    _keep_chunk(chunks, start, current)
    return chunks


def _keep_chunk(chunks: list[tuple[int, str]], start: int, lines: list[str]) -> None:
    # Skip the blank lines that usually surround a separator so the line number points at text.
    while lines and not lines[0].strip():
        lines, start = lines[1:], start + 1
    body = "\n".join(lines).strip()
    if body:  # two separators in a row, or one at the end, are not an empty story
        chunks.append((start, body))


def _heading_and_body(body: str, default: str) -> tuple[str, str]:
    """A short first line followed by more text is the story's title; otherwise use `default`."""
    first, _, rest = body.partition("\n")
    first, rest = first.strip(), rest.strip()
    if rest and len(first) < MAX_HEADING_CHARS:
        return first, rest
    return default, body


def _parse_csv(name: str, text: str) -> list[StoryIn]:
    reader = csv.reader(io.StringIO(text, newline=""))
    stories: list[StoryIn] = []
    try:
        header = _csv_header(reader)
        if "text" not in header:
            raise CorpusFileError(f"{name}: no 'text' column (columns: {', '.join(c for c in header if c) or 'none'})")
        if "section" in header and "title" not in header:
            return [_sectioned_story(name, header, reader)]
        previous_end = reader.line_num
        for row in reader:
            line, previous_end = previous_end + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue  # blank line
            if len(row) > len(header):
                raise CorpusFileError(
                    f"{name}, line {line}: {len(row)} fields but the header has {len(header)} "
                    "(a comma inside a text that is not in double quotes?)"
                )
            record = dict(zip(header, row))
            stories.append(_story_from_record(name, line, record, len(stories) + 1))
    except csv.Error as error:
        raise CorpusFileError(f"{name}, line {reader.line_num}: not valid CSV ({error})") from None
    return stories


def _sectioned_story(name: str, header: list[str], reader) -> StoryIn:
    """FairytaleQA layout: one story per file, one row per section (columns section, text)."""
    sections: list[str] = []
    first_line = reader.line_num + 1
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise CorpusFileError(f"{name}, line {reader.line_num}: {len(row)} fields but the header has {len(header)}")
        text = dict(zip(header, row))["text"].replace("\r\n", "\n").strip()
        if not text:
            raise CorpusFileError(f"{name}, line {reader.line_num}: empty section text")
        sections.append(text)
    if not sections:
        raise CorpusFileError(f"{name}: no sections found")
    title = PurePath(name).stem.replace("-", " ").replace("_", " ").strip().capitalize() or name
    return StoryIn(title[:MAX_TITLE_CHARS], "\n\n".join(sections),
                   {"source_file": name, "line": first_line, "sections": len(sections)}, tuple(sections))


def _csv_header(reader) -> list[str]:
    """The first non-blank row, lower-cased: 'Text' and ' text ' both name the text column."""
    for row in reader:
        if any(cell.strip() for cell in row):
            return [column.strip().lower() for column in row]
    return []


def _parse_jsonl(name: str, text: str) -> list[StoryIn]:
    stories = []
    for line, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as error:
            raise CorpusFileError(f"{name}, line {line}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise CorpusFileError(f"{name}, line {line}: expected a JSON object, got {type(record).__name__}")
        if "text" not in record:
            raise CorpusFileError(f"{name}, line {line}: no 'text' field (fields: {', '.join(record) or 'none'})")
        stories.append(_story_from_record(name, line, record, len(stories) + 1))
    return stories


def _story_from_record(name: str, line: int, record: dict[str, Any], number: int) -> StoryIn:
    """A CSV row or JSON object -> StoryIn; columns other than text and title are kept in meta."""
    text, title = record.get("text"), record.get("title")
    if not isinstance(text, str):
        raise CorpusFileError(f"{name}, line {line}: 'text' must be a string, got {type(text).__name__}")
    if title is not None and not isinstance(title, str):
        raise CorpusFileError(f"{name}, line {line}: 'title' must be a string, got {type(title).__name__}")
    text = text.replace("\r\n", "\n").strip()
    if not text:
        raise CorpusFileError(f"{name}, line {line}: empty text")
    meta: dict[str, Any] = {"source_file": name, "line": line}
    extra = {k: v for k, v in record.items() if k and k not in ("text", "title") and v not in ("", None)}
    if extra:
        meta["fields"] = extra
    title = " ".join((title or "").split()) or f"{PurePath(name).stem} #{number}"
    return StoryIn(title[:MAX_TITLE_CHARS], text, meta)


# --------------------------------------------------------------------------- passages


_SENTENCE_END = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"'”’)\]]))\s+")


def split_passages(text: str, max_words: int = DEFAULT_PASSAGE_WORDS) -> list[str]:
    """Cut a story into passages of at most `max_words` words, on paragraph boundaries.

    Paragraphs (separated by blank lines) are packed together while they fit; a paragraph longer
    than the limit is cut between sentences, and a sentence longer than the limit between words.
    """
    if max_words < 1:
        raise ValueError("max_words must be at least 1")
    units: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        paragraph = paragraph.strip()
        if paragraph:
            units.extend(_fit_paragraph(paragraph, max_words))
    return _pack(units, max_words, joiner="\n\n")


def _fit_paragraph(paragraph: str, max_words: int) -> list[str]:
    if _words(paragraph) <= max_words:
        return [paragraph]
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        if _words(sentence) <= max_words:
            pieces.append(sentence)
        else:
            words = sentence.split()
            pieces.extend(" ".join(words[i:i + max_words]) for i in range(0, len(words), max_words))
    return _pack(pieces, max_words, joiner=" ")


def _pack(units: list[str], max_words: int, joiner: str) -> list[str]:
    packed: list[str] = []
    current: list[str] = []
    current_words = 0
    for unit in units:
        n = _words(unit)
        if current and current_words + n > max_words:
            packed.append(joiner.join(current))
            current, current_words = [], 0
        current.append(unit)
        current_words += n
    if current:
        packed.append(joiner.join(current))
    return packed


def _words(text: str) -> int:
    return len(text.split())


def content_hash(text: str) -> str:
    """Same story, same hash, whatever the spacing or capitalisation."""
    return hashlib.sha256(" ".join(text.lower().split()).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- storing


def import_files(
    actor: Actor | None, corpus_name: str, files: list[tuple[str, bytes]], description: str = ""
) -> ImportReport:
    """Parse every file, then store them all in one transaction (into a new or an existing corpus)."""
    require_admin(actor)
    corpus_name = _clean_corpus_name(corpus_name)
    if not files:
        raise ValueError("Choose at least one file to import.")
    stories = parse_files(files)
    names = tuple(PurePath(filename).name for filename, _ in files)
    return _store(corpus_name, stories, description, ", ".join(names), actor.id, names)


def _store(
    corpus_name: str, stories: list[StoryIn], description: str, source: str, created_by_id: int | None,
    files: tuple[str, ...],
) -> ImportReport:
    with write_session() as session:
        corpus = _get_or_create_corpus(session, corpus_name, description, source, created_by_id)
        first_position = reserve_positions(session, corpus.id, len(stories))
        added, duplicates, passages = _insert_stories(session, corpus.id, stories, first_position)
        return ImportReport(corpus.id, corpus.name, added, duplicates, passages, files)


def _clean_corpus_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise ValueError("A corpus needs a name.")
    if len(name) > MAX_CORPUS_NAME_CHARS:
        raise ValueError(f"A corpus name is at most {MAX_CORPUS_NAME_CHARS} characters.")
    return name


def _get_or_create_corpus(
    session: Session, name: str, description: str, source: str, created_by_id: int | None
) -> Corpus:
    corpus = session.scalar(select(Corpus).where(Corpus.name == name))
    if corpus is None:
        corpus = Corpus(name=name, description=(description or "").strip(), source=source[:MAX_SOURCE_CHARS],
                        created_by_id=created_by_id)
        session.add(corpus)
        session.flush()
    elif source:
        # Appending: remember where the new stories came from too, as far as the column allows.
        merged = f"{corpus.source}, {source}" if corpus.source else source
        corpus.source = merged[:MAX_SOURCE_CHARS]
    return corpus


def reserve_positions(session: Session, corpus_id: int, count: int) -> int:
    """Hand out `count` consecutive story positions of the corpus; returns the first.

    The corpus row is locked for the rest of the transaction (FOR UPDATE on PostgreSQL, the database
    lock on SQLite), so two imports into one corpus, inline or as a job, never get the same range.
    An import job reserves its whole file at once and keeps the range across attempts.
    """
    corpus = session.scalar(select(Corpus).where(Corpus.id == corpus_id).with_for_update())
    if corpus is None:
        raise ValueError(f"No corpus with id {corpus_id}.")
    # Stories written without the counter (before it existed, or by hand) still push it forward.
    first = max(corpus.next_position or 0, _after_highest_position(session, corpus_id))
    corpus.next_position = first + count
    session.flush()
    return first


def _after_highest_position(session: Session, corpus_id: int) -> int:
    highest = session.scalar(select(func.max(Story.position)).where(Story.corpus_id == corpus_id))
    return 0 if highest is None else highest + 1


def _existing_hashes(session: Session, corpus_id: int, hashes: list[str]) -> set[str]:
    found: set[str] = set()
    unique = sorted(set(hashes))
    for i in range(0, len(unique), HASH_LOOKUP_CHUNK):
        chunk = unique[i:i + HASH_LOOKUP_CHUNK]
        found.update(session.scalars(
            select(Story.content_hash).where(Story.corpus_id == corpus_id, Story.content_hash.in_(chunk))
        ))
    return found


def _insert_stories(
    session: Session, corpus_id: int, stories: list[StoryIn], first_position: int
) -> tuple[int, int, int]:
    """Insert stories at positions first_position + index; returns (added, duplicates, passages).

    A story already in the corpus, or earlier in `stories`, is skipped. Its position stays unused,
    so positions depend only on the index in the file: what the import job's resume relies on.
    """
    hashes = [content_hash(story.text) for story in stories]
    seen = _existing_hashes(session, corpus_id, hashes)
    added = duplicates = passages = 0
    for index, (story, digest) in enumerate(zip(stories, hashes)):
        if digest in seen:
            duplicates += 1
            continue
        seen.add(digest)
        pieces = [piece for section in story.sections for piece in split_passages(section)] or \
            split_passages(story.text)
        session.add(Story(
            corpus_id=corpus_id, position=first_position + index, title=story.title, text=story.text,
            content_hash=digest, word_count=_words(story.text), meta=dict(story.meta),
            passages=[Passage(position=i, text=piece) for i, piece in enumerate(pieces)],
        ))
        added += 1
        passages += len(pieces)
    session.flush()
    return added, duplicates, passages


# --------------------------------------------------------------------------- browsing


def list_corpora() -> list[CorpusView]:
    story_stats = (
        select(Story.corpus_id, func.count(Story.id).label("stories"), func.sum(Story.word_count).label("words"))
        .group_by(Story.corpus_id).subquery()
    )
    passage_stats = (
        select(Story.corpus_id, func.count(Passage.id).label("passages"))
        .join(Passage, Passage.story_id == Story.id)
        .group_by(Story.corpus_id).subquery()
    )
    query = (
        select(Corpus, story_stats.c.stories, story_stats.c.words, passage_stats.c.passages)
        .outerjoin(story_stats, story_stats.c.corpus_id == Corpus.id)
        .outerjoin(passage_stats, passage_stats.c.corpus_id == Corpus.id)
        .order_by(Corpus.name)
    )
    with read_session() as session:
        return [
            CorpusView(c.id, c.name, c.description, c.source, int(stories or 0), int(passages or 0),
                       int(words or 0), c.created_at)
            for c, stories, words, passages in session.execute(query).tuples()
        ]


def list_stories(corpus_id: int, offset: int = 0, limit: int = 50, search: str = "") -> tuple[list[StoryRow], int]:
    """One page of a corpus's stories in order, and how many match in all."""
    conditions = [Story.corpus_id == corpus_id]
    search = search.strip()
    if search:
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", search) + "%"
        conditions.append(or_(Story.title.ilike(pattern, escape="\\"), Story.text.ilike(pattern, escape="\\")))
    passage_count = (
        select(func.count(Passage.id)).where(Passage.story_id == Story.id).correlate(Story).scalar_subquery()
    )
    # Only the start of each text leaves the database: a page of long stories stays small.
    query = (
        select(Story.id, Story.position, Story.title, Story.word_count, passage_count,
               func.substr(Story.text, 1, PREVIEW_CHARS + 1))
        .where(*conditions).order_by(Story.position)
        .offset(max(0, offset)).limit(max(1, min(limit, 1000)))
    )
    with read_session() as session:
        total = session.scalar(select(func.count(Story.id)).where(*conditions)) or 0
        rows = [
            StoryRow(id, position, title, words, int(passages), _preview(start))
            for id, position, title, words, passages, start in session.execute(query).tuples()
        ]
    return rows, total


def _preview(start: str) -> str:
    flat = " ".join(start.split())
    return flat if len(start) <= PREVIEW_CHARS else flat[:PREVIEW_CHARS].rstrip() + "…"


def get_story(story_id: int) -> StoryDetail:
    with read_session() as session:
        story = session.get(Story, story_id)
        if story is None:
            raise ValueError(f"No story with id {story_id}.")
        passages = tuple(PassageView(p.id, p.position, p.text, _words(p.text)) for p in story.passages)
        return StoryDetail(story.id, story.corpus_id, story.corpus.name, story.position, story.title, story.text,
                           story.word_count, dict(story.meta or {}), passages)


def delete_corpus(actor: Actor | None, corpus_id: int) -> None:
    """Delete a corpus with its stories and passages (the database cascades)."""
    require_admin(actor)
    with write_session() as session:
        if session.execute(delete(Corpus).where(Corpus.id == corpus_id)).rowcount != 1:
            raise ValueError(f"No corpus with id {corpus_id}.")


def delete_story(actor: Actor | None, story_id: int) -> None:
    require_admin(actor)
    with write_session() as session:
        if session.execute(delete(Story).where(Story.id == story_id)).rowcount != 1:
            raise ValueError(f"No story with id {story_id}.")


# --------------------------------------------------------------------------- demo corpus


def load_demo_corpus() -> int | None:
    """Import the bundled demo plots as "Demo: EmoForge plots" unless that corpus exists; its id.

    None when the bundled file is missing (a trimmed install).
    """
    with read_session() as session:
        existing = session.scalar(select(Corpus.id).where(Corpus.name == DEMO_CORPUS_NAME))
    if existing is not None:
        return existing
    if not DEMO_CORPUS_FILE.exists():
        return None
    stories = parse_file(DEMO_CORPUS_FILE.name, DEMO_CORPUS_FILE.read_bytes())
    try:
        report = _store(DEMO_CORPUS_NAME, stories, "Short original plot synopses to try EmoForge with.", "demo",
                        None, (DEMO_CORPUS_FILE.name,))
    except IntegrityError:
        # The app and the worker started together and the other one imported it first.
        with read_session() as session:
            return session.scalar(select(Corpus.id).where(Corpus.name == DEMO_CORPUS_NAME))
    return report.corpus_id


# --------------------------------------------------------------------------- worker import


def enqueue_import(
    actor: Actor | None, corpus_name: str, filename: str, data: bytes, *,
    description: str = "", batch_size: int = DEFAULT_JOB_BATCH, companion: tuple[str, bytes] | None = None,
) -> int:
    """Check the file now (so the user hears about a bad file at once), then queue it for the worker.

    `companion` is the second file of a pair read together (WikiPlots: `plots` with its `titles`).
    """
    require_admin(actor)
    corpus_name = _clean_corpus_name(corpus_name)
    name = PurePath(filename).name
    files = [(name, data)] + ([(PurePath(companion[0]).name, companion[1])] if companion else [])
    parse_files(files)
    with write_session() as session:
        uploads = [Upload(filename=n, content=d, sha256=hashlib.sha256(d).hexdigest(), created_by_id=actor.id)
                   for n, d in files]
        session.add_all(uploads)
        session.flush()
        payload = {"upload_id": uploads[0].id, "corpus_name": corpus_name, "description": description,
                   "batch_size": max(1, int(batch_size))}
        if companion:
            payload["companion_upload_id"] = uploads[1].id
        return jobs.enqueue(actor, "import_corpus", payload, title=f"Import {name} into {corpus_name}",
                            session=session)


def import_or_enqueue(actor: Actor | None, corpus_name: str, files: list[tuple[str, bytes]],
                      description: str = "") -> inline.Outcome[ImportReport]:
    """What the Corpus page's Import does: small uploads are imported now (the report), big ones are
    checked now and queued for the worker (one job per file; the WikiPlots pair is one job)."""
    require_admin(actor)
    if not files:
        raise ValueError("Choose at least one file to import.")
    if inline.upload_runs_now(sum(len(data) for _, data in files)):
        return inline.Outcome(report=import_files(actor, corpus_name, files, description=description))
    if is_wikiplots_pair(files):
        plots, titles = sorted(files, key=lambda f: _stem(f[0]) == "titles")
        return inline.Outcome(job_ids=(enqueue_import(actor, corpus_name, *plots, description=description,
                                                      companion=titles),))
    if len(files) > 1:  # check them all first: one bad file queues nothing
        for filename, data in files:
            parse_file(filename, data)
    return inline.Outcome(job_ids=tuple(enqueue_import(actor, corpus_name, filename, data, description=description)
                                        for filename, data in files))


@jobs.handler("import_corpus")
def run_import_job(ctx: jobs.JobContext) -> dict[str, Any]:
    """Insert the upload's stories batch by batch; each batch commits with the checkpoint.

    The upload is deleted in the transaction of the last batch, and the result kept in the
    checkpoint, so a worker that dies after that commit but before `finish` resumes to the result.
    """
    if ctx.checkpoint.get("finished"):
        return dict(ctx.checkpoint["result"])
    filename, stories = _load_upload(ctx.payload["upload_id"], ctx.payload.get("companion_upload_id"))
    if "corpus_id" not in ctx.checkpoint:
        _start_import(ctx, filename, len(stories))
    total = len(stories)
    ctx.set_total(total, note=f"{ctx.checkpoint['next']}/{total} stories")
    batch_size = max(1, int(ctx.payload.get("batch_size", DEFAULT_JOB_BATCH)))
    while not ctx.checkpoint.get("finished"):
        ctx.check_cancel()
        _import_batch(ctx, stories, batch_size)
    return dict(ctx.checkpoint["result"])


def _load_upload(upload_id: int, companion_id: int | None = None) -> tuple[str, list[StoryIn]]:
    files = []
    with read_session() as session:
        for some_id in filter(None, (upload_id, companion_id)):
            upload = session.get(Upload, some_id)
            if upload is None:
                raise jobs.JobFailed(f"The uploaded file (upload {some_id}) is gone; upload it again.")
            files.append((upload.filename, upload.content))
    try:
        return files[0][0], parse_files(files)
    except CorpusFileError as error:
        raise jobs.JobFailed(str(error)) from None


def _start_import(ctx: jobs.JobContext, filename: str, count: int) -> None:
    """Create or find the corpus and reserve the file's positions, once for all attempts."""
    with ctx.batch() as session:
        corpus = _get_or_create_corpus(session, ctx.payload["corpus_name"], ctx.payload.get("description", ""),
                                       filename, ctx.created_by_id)
        checkpoint = {"next": 0, "corpus_id": corpus.id, "corpus_name": corpus.name,
                      "first_position": reserve_positions(session, corpus.id, count),
                      "added": 0, "duplicates": 0, "passages": 0}
        ctx.advance(session, 0, checkpoint=checkpoint)


def _import_batch(ctx: jobs.JobContext, stories: list[StoryIn], batch_size: int) -> None:
    checkpoint = dict(ctx.checkpoint)
    start = checkpoint["next"]
    end = min(start + batch_size, len(stories))
    with ctx.batch() as session:
        if session.get(Corpus, checkpoint["corpus_id"]) is None:
            raise jobs.JobFailed(f"The corpus {checkpoint['corpus_name']!r} was deleted during the import.")
        added, duplicates, passages = _insert_stories(
            session, checkpoint["corpus_id"], stories[start:end], checkpoint["first_position"] + start
        )
        checkpoint.update(next=end, added=checkpoint["added"] + added,
                          duplicates=checkpoint["duplicates"] + duplicates,
                          passages=checkpoint["passages"] + passages)
        if end >= len(stories):
            checkpoint["finished"] = True
            checkpoint["result"] = {
                "corpus_id": checkpoint["corpus_id"], "corpus_name": checkpoint["corpus_name"],
                "stories_added": checkpoint["added"], "duplicates_skipped": checkpoint["duplicates"],
                "passages_added": checkpoint["passages"],
            }
            # The bytes are no longer needed; keeping a 50 MB blob per import would bloat the database.
            uploads = [ctx.payload["upload_id"], ctx.payload.get("companion_upload_id") or -1]
            session.execute(delete(Upload).where(Upload.id.in_(uploads)))
        ctx.advance(session, end - start, checkpoint=checkpoint, note=f"{end}/{len(stories)} stories")
