"""The whole EmoForge data model (SQLAlchemy 2.x typed ORM).

Shaped after what annotation tools learned the hard way: records keep their provenance
(story, character, prompt version, model, sampling parameters, raw output); what a model
proposes (suggestions, descriptors) is kept apart from what people answer (responses) and
from what curators decide (curation decisions); derived signals live in tables of their own
so they can be recomputed without touching annotations.

Changes to this file go with an Alembic migration in db/migrations/versions/.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import text as sql_text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTC(TypeDecorator):
    """Timezone-aware UTC timestamps on every backend (SQLite drops tzinfo on the way back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Optional[datetime], dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value

    def process_result_value(self, value: Optional[datetime], dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class HexKey(TypeDecorator):
    """A hash kept as raw bytes (half the room of its hex text, in the row and in its index), read
    and written as hex: the code compares and logs hex strings."""

    impl = LargeBinary(16)
    cache_ok = True

    def process_bind_param(self, value: Optional[str], dialect):
        return None if value is None else bytes.fromhex(value)

    def process_result_value(self, value: Optional[bytes], dialect):
        return None if value is None else bytes(value).hex()


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTC(), dict[str, Any]: JSON(), list[Any]: JSON()}


def _enum(cls: type[enum.Enum]) -> Enum:
    # Stored as plain strings (no native PG enum): later issues add values without a type migration.
    return Enum(cls, native_enum=False, length=32, values_callable=lambda e: [m.value for m in e])


# --------------------------------------------------------------------------- users


class Role(str, enum.Enum):
    admin = "admin"
    annotator = "annotator"


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_enum(Role), default=Role.annotator)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[Optional[datetime]]


class AuthSession(Base):
    """One login: what a browser's session cookie points at (core/sessions.py).

    Only hashes are stored: of the one-time ticket the browser trades for its cookie, and of the
    cookie's token. A session ends at `expires_at` or when `revoked_at` is set (logout, role
    change, deactivation, password change).
    """

    __tablename__ = "auth_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[Optional[str]] = mapped_column(String(64), unique=True)
    ticket_hash: Mapped[Optional[str]] = mapped_column(String(64), unique=True)
    ticket_expires_at: Mapped[Optional[datetime]]
    address: Mapped[Optional[str]] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    revoked_at: Mapped[Optional[datetime]]
    revoked_reason: Mapped[Optional[str]] = mapped_column(String(32))


class LoginFailure(Base):
    """A refused password, kept for the login rate limit (per username and per address)."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_username_at", "username", "at"),
        Index("ix_login_failures_address_at", "address", "at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    address: Mapped[Optional[str]] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Setting(Base):
    """Key/value settings edited in the browser (engine settings and the like).

    Secrets are stored encrypted (`is_secret`), never returned to pages in clear.
    """

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[Optional[Any]] = mapped_column(JSON)
    is_secret: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# --------------------------------------------------------------------------- taxonomies


class Taxonomy(Base):
    __tablename__ = "taxonomies"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    multi_label: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    labels: Mapped[list["Label"]] = relationship(
        back_populates="taxonomy", order_by="Label.position", cascade="all, delete-orphan"
    )


class Label(Base):
    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("taxonomy_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    taxonomy_id: Mapped[int] = mapped_column(ForeignKey("taxonomies.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    position: Mapped[int] = mapped_column(Integer, default=0)
    taxonomy: Mapped[Taxonomy] = relationship(back_populates="labels")


class LabelGrouping(Base):
    """A label of one taxonomy counted as a label of another (GoEmotions 'annoyance' -> Ekman 'anger')."""

    __tablename__ = "label_groupings"
    __table_args__ = (UniqueConstraint("source_label_id", "target_label_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    source_label_id: Mapped[int] = mapped_column(ForeignKey("labels.id", ondelete="CASCADE"), index=True)
    target_label_id: Mapped[int] = mapped_column(ForeignKey("labels.id", ondelete="CASCADE"), index=True)


class OOTAction(str, enum.Enum):
    pending = "pending"  # waits for a human decision
    map = "map"  # counted as target_label
    drop = "drop"  # ignored
    propose = "propose"  # proposed as a new taxonomy label


class OOTMapping(Base):
    """What to do with an emotion name the teacher invented outside the taxonomy ('anxiety')."""

    __tablename__ = "oot_mappings"
    __table_args__ = (UniqueConstraint("taxonomy_id", "source_name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    taxonomy_id: Mapped[int] = mapped_column(ForeignKey("taxonomies.id", ondelete="CASCADE"), index=True)
    source_name: Mapped[str] = mapped_column(String(128))  # normalised: lower case, stripped
    action: Mapped[OOTAction] = mapped_column(_enum(OOTAction), default=OOTAction.pending)
    target_label_id: Mapped[Optional[int]] = mapped_column(ForeignKey("labels.id", ondelete="SET NULL"))
    occurrences: Mapped[int] = mapped_column(Integer, default=0)
    decided_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decided_at: Mapped[Optional[datetime]]
    note: Mapped[str] = mapped_column(Text, default="")


# --------------------------------------------------------------------------- corpus


class Corpus(Base):
    __tablename__ = "corpora"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(255), default="")  # file name(s) or 'demo'
    # The first story position not yet handed out (see core.corpus.reserve_positions): an import job
    # reserves its whole file's range up front, so an import beside it never takes the same positions.
    next_position: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    stories: Mapped[list["Story"]] = relationship(
        back_populates="corpus", cascade="all, delete-orphan", passive_deletes=True, order_by="Story.position"
    )


class Story(Base):
    __tablename__ = "stories"
    __table_args__ = (UniqueConstraint("corpus_id", "position"), Index("ix_stories_content_hash", "content_hash"))
    id: Mapped[int] = mapped_column(primary_key=True)
    corpus_id: Mapped[int] = mapped_column(ForeignKey("corpora.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)  # order in the corpus; unique so re-runs cannot duplicate
    title: Mapped[str] = mapped_column(String(500), default="")
    text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))  # sha256 of normalised text: duplicate detection
    word_count: Mapped[int] = mapped_column(Integer, default=0)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)  # source file, line, origin...
    corpus: Mapped[Corpus] = relationship(back_populates="stories")
    passages: Mapped[list["Passage"]] = relationship(
        back_populates="story", cascade="all, delete-orphan", passive_deletes=True, order_by="Passage.position"
    )


class Passage(Base):
    __tablename__ = "passages"
    __table_args__ = (UniqueConstraint("story_id", "position"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    story_id: Mapped[int] = mapped_column(ForeignKey("stories.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    story: Mapped[Story] = relationship(back_populates="passages")


# --------------------------------------------------------------------------- generation


class PromptTemplate(Base):
    """A versioned prompt of one pipeline stage; examples record the version that made them."""

    __tablename__ = "prompt_templates"
    __table_args__ = (UniqueConstraint("stage", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    stage: Mapped[str] = mapped_column(String(64))  # characters, utterances, labels, context, clean, rewrite, descriptors
    version: Mapped[int] = mapped_column(Integer)
    system_prompt: Mapped[str] = mapped_column(Text, default="")
    user_prompt: Mapped[str] = mapped_column(Text)
    output_schema: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RunStatus(str, enum.Enum):
    draft = "draft"
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    discarded = "discarded"  # a failed or stopped run closed for good by a user; what it produced stays


class GenerationRun(Base):
    __tablename__ = "generation_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    corpus_id: Mapped[Optional[int]] = mapped_column(ForeignKey("corpora.id", ondelete="SET NULL"))
    taxonomy_id: Mapped[Optional[int]] = mapped_column(ForeignKey("taxonomies.id", ondelete="SET NULL"))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)  # stages, counts, quotas, seed
    template_versions: Mapped[dict[str, Any]] = mapped_column(default=dict)  # stage -> template id/version
    engine: Mapped[str] = mapped_column(String(32), default="vllm")
    model: Mapped[str] = mapped_column(String(500), default="")
    sampling: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[RunStatus] = mapped_column(_enum(RunStatus), default=RunStatus.draft)
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)  # per stage: requests, failures, produced
    job_id: Mapped[Optional[int]] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))  # latest job
    created_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[Optional[datetime]]


class LLMRequest(Base):
    """One teacher call, keyed by a hash of (engine, model, messages, sampling, schema): the response cache."""

    __tablename__ = "llm_requests"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(HexKey, unique=True)  # core.llm.types.request_key: 32 hex digits
    run_id: Mapped[Optional[int]] = mapped_column(ForeignKey("generation_runs.id", ondelete="SET NULL"), index=True)
    job_id: Mapped[Optional[int]] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)  # last job
    stage: Mapped[str] = mapped_column(String(64), default="")
    engine: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(500))
    # Compact: [[[role, [text id or short inline text, ...]], ...], [temperature, top_p, max_tokens, seed,
    # repetition_penalty], schema text id]; the texts (paragraphs of the messages, the schema) live once
    # each in `llm_texts` (core.llm.stored). Earlier versions wrote the same as a dict.
    request: Mapped[Any] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | ok | invalid | error
    raw_text: Mapped[Optional[str]] = mapped_column(Text)
    parsed: Mapped[Optional[Any]] = mapped_column(JSON(none_as_null=True))  # SQL NULL, not a JSON null, when absent
    error: Mapped[Optional[str]] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    finish_reason: Mapped[Optional[str]] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[Optional[datetime]]


class LLMText(Base):
    """A paragraph of a prompt (or an output schema), stored once however many requests use it."""

    __tablename__ = "llm_texts"
    id: Mapped[int] = mapped_column(primary_key=True)
    hash: Mapped[str] = mapped_column(String(32), unique=True)  # blake2b-128 of the text, hex
    text: Mapped[str] = mapped_column(Text)


class Character(Base):
    __tablename__ = "characters"
    id: Mapped[int] = mapped_column(primary_key=True)
    story_id: Mapped[int] = mapped_column(ForeignKey("stories.id", ondelete="CASCADE"), index=True)
    passage_id: Mapped[Optional[int]] = mapped_column(ForeignKey("passages.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[Optional[int]] = mapped_column(ForeignKey("generation_runs.id", ondelete="CASCADE"), index=True)
    llm_request_id: Mapped[Optional[int]] = mapped_column(ForeignKey("llm_requests.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")


class ExampleKind(str, enum.Enum):
    contextless = "contextless"
    contextual = "contextual"
    imported = "imported"


class Example(Base):
    __tablename__ = "examples"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[ExampleKind] = mapped_column(_enum(ExampleKind), index=True)
    text: Mapped[str] = mapped_column(Text)  # the utterance
    context: Mapped[Optional[str]] = mapped_column(Text)
    raw_context: Mapped[Optional[str]] = mapped_column(Text)  # context before emotion words were cleaned out
    character_id: Mapped[Optional[int]] = mapped_column(ForeignKey("characters.id", ondelete="SET NULL"), index=True)
    passage_id: Mapped[Optional[int]] = mapped_column(ForeignKey("passages.id", ondelete="SET NULL"), index=True)
    story_id: Mapped[Optional[int]] = mapped_column(ForeignKey("stories.id", ondelete="SET NULL"), index=True)
    run_id: Mapped[Optional[int]] = mapped_column(ForeignKey("generation_runs.id", ondelete="CASCADE"), index=True)
    stage: Mapped[str] = mapped_column(String(64), default="")  # stage that produced the text
    parent_id: Mapped[Optional[int]] = mapped_column(ForeignKey("examples.id", ondelete="SET NULL"), index=True)
    taxonomy_id: Mapped[Optional[int]] = mapped_column(ForeignKey("taxonomies.id", ondelete="SET NULL"))
    template_id: Mapped[Optional[int]] = mapped_column(ForeignKey("prompt_templates.id", ondelete="SET NULL"))
    llm_request_id: Mapped[Optional[int]] = mapped_column(ForeignKey("llm_requests.id", ondelete="SET NULL"))
    raw_output: Mapped[Optional[str]] = mapped_column(Text)
    target_emotion: Mapped[Optional[str]] = mapped_column(String(128))  # what generation was steered to
    source: Mapped[str] = mapped_column(String(255), default="")  # imported data set name / file
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)  # curation: pending|accepted|rejected
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Expressiveness(Base):
    """How strongly a context-less example expresses emotion (0-1), as the teacher rated it with its labels.

    A row of its own, written once when the labels arrive: updating a column of the example instead wrote
    a second copy of every example row and of its index entries (PostgreSQL keeps the old version)."""

    __tablename__ = "expressiveness"
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    llm_request_id: Mapped[Optional[int]] = mapped_column(ForeignKey("llm_requests.id", ondelete="SET NULL"))


class Suggestion(Base):
    """A proposed label with a score, from an agent (model@version or a user)."""

    __tablename__ = "suggestions"
    # A run writes five suggestions per example, so every index entry counts: the example's few rows are
    # filtered by agent after the look-up, and only suggestions outside the taxonomy are found by name.
    __table_args__ = (Index("ix_suggestions_example_id", "example_id"),
                      Index("ix_suggestions_oot_name", "oot_name", postgresql_where=sql_text("oot_name IS NOT NULL"),
                            sqlite_where=sql_text("oot_name IS NOT NULL")))
    id: Mapped[int] = mapped_column(primary_key=True)
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"))
    label_id: Mapped[Optional[int]] = mapped_column(ForeignKey("labels.id", ondelete="CASCADE"), index=True)
    oot_name: Mapped[Optional[str]] = mapped_column(String(128))  # set when outside the taxonomy
    score: Mapped[float] = mapped_column(Float)
    agent: Mapped[str] = mapped_column(String(255))
    llm_request_id: Mapped[Optional[int]] = mapped_column(ForeignKey("llm_requests.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Descriptor(Base):
    """Free-text emotion description written by the teacher (contrastive distillation)."""

    __tablename__ = "descriptors"
    id: Mapped[int] = mapped_column(primary_key=True)
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    intensity: Mapped[Optional[float]] = mapped_column(Float)  # 0.1 .. 1.0, as the teacher gave it
    rejected_reason: Mapped[Optional[str]] = mapped_column(Text)  # set when the answer failed its content gates
    agent: Mapped[str] = mapped_column(String(255))
    llm_request_id: Mapped[Optional[int]] = mapped_column(ForeignKey("llm_requests.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --------------------------------------------------------------------------- review


class Campaign(Base):
    __tablename__ = "campaigns"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    task: Mapped[str] = mapped_column(String(64))  # diversity | personalization | oot | verification | custom
    guidelines: Mapped[str] = mapped_column(Text, default="")
    overlap: Mapped[int] = mapped_column(Integer, default=1)  # annotators per item
    min_submissions: Mapped[int] = mapped_column(Integer, default=1)  # submissions that complete an item
    show_suggestions: Mapped[bool] = mapped_column(Boolean, default=True)
    reveal_responses: Mapped[bool] = mapped_column(Boolean, default=False)  # annotators blind until revealed
    taxonomy_id: Mapped[Optional[int]] = mapped_column(ForeignKey("taxonomies.id", ondelete="SET NULL"))
    selection: Mapped[dict[str, Any]] = mapped_column(default=dict)  # how items were chosen
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Question(Base):
    __tablename__ = "questions"
    __table_args__ = (UniqueConstraint("campaign_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))  # rating | single_label | multi_label | text | flag
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)  # anchors, label choices, required
    position: Mapped[int] = mapped_column(Integer, default=0)


class CampaignAnnotator(Base):
    __tablename__ = "campaign_annotators"
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)


class CampaignItem(Base):
    __tablename__ = "campaign_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    example_id: Mapped[Optional[int]] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)  # groups of examples, an OOT name...
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)  # pending | completed
    submitted_count: Mapped[int] = mapped_column(Integer, default=0)


class ItemAssignment(Base):
    """One annotator's turn on one item. campaign_id and position repeat the item's so that an
    annotator's next item is one index seek (campaign, user, status, position), however far along."""

    __tablename__ = "item_assignments"
    __table_args__ = (
        UniqueConstraint("item_id", "user_id"),
        Index("ix_item_assignments_queue", "campaign_id", "user_id", "status", "position"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("campaign_items.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="assigned")  # assigned | submitted | skipped
    submitted_at: Mapped[Optional[datetime]]


class ResponseStatus(str, enum.Enum):
    draft = "draft"
    submitted = "submitted"
    discarded = "discarded"


class Response(Base):
    __tablename__ = "responses"
    __table_args__ = (UniqueConstraint("item_id", "user_id", "question_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("campaign_items.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    question_id: Mapped[int] = mapped_column(ForeignKey("questions.id", ondelete="CASCADE"))
    value: Mapped[Optional[Any]] = mapped_column(JSON)
    status: Mapped[ResponseStatus] = mapped_column(_enum(ResponseStatus), default=ResponseStatus.draft)
    seconds_spent: Mapped[float] = mapped_column(Float, default=0.0)
    version: Mapped[int] = mapped_column(Integer, default=1)  # optimistic locking between two saves
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    __mapper_args__ = {"version_id_col": version}


class ResponseVersion(Base):
    """A submitted answer that a later submission replaced: the history of a submitted item.

    `responses` keeps one row per (item, annotator, question), the answer in force; editing a
    submitted item writes its previous value here and the new one there, still submitted.
    """

    __tablename__ = "response_versions"
    __table_args__ = (UniqueConstraint("response_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    response_id: Mapped[int] = mapped_column(ForeignKey("responses.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)  # the response's version while this value was in force
    value: Mapped[Optional[Any]] = mapped_column(JSON)
    seconds_spent: Mapped[float] = mapped_column(Float, default=0.0)
    submitted_at: Mapped[Optional[datetime]]
    replaced_at: Mapped[datetime] = mapped_column(default=utcnow)


# --------------------------------------------------------------------------- curation


class CurationDecision(Base):
    """Every accept / reject / relabel, with the state it replaced: the history that makes undo possible."""

    __tablename__ = "curation_decisions"
    id: Mapped[int] = mapped_column(primary_key=True)
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(16))  # accept | reject | relabel | reset
    labels: Mapped[Optional[list[Any]]] = mapped_column(JSON)  # the labels set by a relabel
    previous: Mapped[dict[str, Any]] = mapped_column(default=dict)  # status and labels before
    batch_id: Mapped[Optional[str]] = mapped_column(String(36), index=True)  # one bulk action
    reason: Mapped[str] = mapped_column(Text, default="")
    decided_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)
    undone_at: Mapped[Optional[datetime]]


class Signal(Base):
    """A derived, recomputable per-example signal (near-duplicate cluster, label-issue score...)."""

    __tablename__ = "signals"
    __table_args__ = (Index("ix_signals_kind_example", "kind", "example_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(64))
    value: Mapped[Optional[float]] = mapped_column(Float)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    computed_by: Mapped[str] = mapped_column(String(255), default="")
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)


class GroupSignal(Base):
    """A derived figure about a group of examples (diversity of one emotion or one character).

    Like Signal, recomputable at any time without touching annotations; one row per
    (kind, group_by, group_key, metric) of the latest computation.
    """

    __tablename__ = "group_signals"
    __table_args__ = (Index("ix_group_signals_kind_group", "kind", "group_by"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))  # diversity
    group_by: Mapped[str] = mapped_column(String(32))  # emotion | character | all
    group_key: Mapped[str] = mapped_column(String(255))  # the emotion name, the character id...
    metric: Mapped[str] = mapped_column(String(64))  # distinct_1 | distinct_2 | self_bleu | embedding_distance
    value: Mapped[Optional[float]] = mapped_column(Float)
    size: Mapped[int] = mapped_column(Integer, default=0)  # examples in the group
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    computed_by: Mapped[str] = mapped_column(String(255), default="")
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)


# --------------------------------------------------------------------------- datasets


class DatasetVersion(Base):
    __tablename__ = "dataset_versions"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    taxonomy_id: Mapped[Optional[int]] = mapped_column(ForeignKey("taxonomies.id", ondelete="SET NULL"))
    selection: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the filter that was frozen
    split_config: Mapped[dict[str, Any]] = mapped_column(default=dict)  # ratios, seed, grouping
    content_hash: Mapped[Optional[str]] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(Integer, default=0)
    is_evaluation_set: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DatasetMember(Base):
    __tablename__ = "dataset_members"
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id", ondelete="CASCADE"), primary_key=True)
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"), primary_key=True)
    split: Mapped[str] = mapped_column(String(8), index=True)  # train | dev | test
    labels: Mapped[list[Any]] = mapped_column(default=list)  # frozen label names
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict)  # frozen soft labels


class Export(Base):
    __tablename__ = "exports"
    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id", ondelete="CASCADE"), index=True)
    format: Mapped[str] = mapped_column(String(32))  # jsonl | csv | hf_datasets | parquet
    path: Mapped[str] = mapped_column(String(1000))
    sha256: Mapped[Optional[str]] = mapped_column(String(64))
    created_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --------------------------------------------------------------------------- training


class TrainingRun(Base):
    __tablename__ = "training_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # classifier | contrastive
    version_id: Mapped[Optional[int]] = mapped_column(ForeignKey("dataset_versions.id", ondelete="SET NULL"))
    base_model: Mapped[str] = mapped_column(String(1000))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[RunStatus] = mapped_column(_enum(RunStatus), default=RunStatus.queued)
    checkpoint_path: Mapped[Optional[str]] = mapped_column(String(1000))
    job_id: Mapped[Optional[int]] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))  # latest job
    created_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[Optional[datetime]]


class TrainingMetric(Base):
    __tablename__ = "training_metrics"
    __table_args__ = (Index("ix_training_metrics_run_step", "run_id", "step"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("training_runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[float] = mapped_column(Float, default=0.0)
    split: Mapped[str] = mapped_column(String(8), default="train")
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)


class Model(Base):
    __tablename__ = "models"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))  # classifier | contrastive | baseline
    run_id: Mapped[Optional[int]] = mapped_column(ForeignKey("training_runs.id", ondelete="SET NULL"))
    # Lineage: the registered model this one was trained from (a run started from a model).
    parent_id: Mapped[Optional[int]] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    path: Mapped[str] = mapped_column(String(1000))
    dataset_hash: Mapped[Optional[str]] = mapped_column(String(64))
    labels: Mapped[list[Any]] = mapped_column(default=list)
    thresholds: Mapped[dict[str, Any]] = mapped_column(default=dict)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Evaluation(Base):
    __tablename__ = "evaluations"
    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    benchmark: Mapped[str] = mapped_column(String(200))
    taxonomy_id: Mapped[Optional[int]] = mapped_column(ForeignKey("taxonomies.id", ondelete="SET NULL"))
    figures: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --------------------------------------------------------------------------- jobs


class JobStatus(str, enum.Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class Job(Base):
    """A unit of long work for `python -m core.worker`, claimed under a lease."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_lease", "status", "lease_until"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(300), default="")
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus), default=JobStatus.queued)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    created_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[Optional[datetime]]
    finished_at: Mapped[Optional[datetime]]
    lease_owner: Mapped[Optional[str]] = mapped_column(String(128))
    lease_until: Mapped[Optional[datetime]]
    heartbeat_at: Mapped[Optional[datetime]]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[Optional[int]] = mapped_column(Integer)
    progress_note: Mapped[str] = mapped_column(Text, default="")
    rate: Mapped[Optional[float]] = mapped_column(Float)  # units per second over the current attempt
    checkpoint: Mapped[dict[str, Any]] = mapped_column(default=dict)  # handler's resume state
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[Optional[str]] = mapped_column(Text)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)


class JobEvent(Base):
    """What happened to a job, in words a user can read (claimed, lost lease, failed because...)."""

    __tablename__ = "job_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    level: Mapped[str] = mapped_column(String(8), default="info")
    message: Mapped[str] = mapped_column(Text)
    worker: Mapped[Optional[str]] = mapped_column(String(128))


class Upload(Base):
    """A user file kept for a job to import (large corpora go through the worker)."""

    __tablename__ = "uploads"
    id: Mapped[int] = mapped_column(primary_key=True)
    filename: Mapped[str] = mapped_column(String(500))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    created_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
