"""A campaign's results: its task's figures (beside the paper's), CSV, and the admin's decisions
on out-of-taxonomy labels.

Every CSV of review results (answers, agreement) is written by `write_csv` alone: one place to
neutralise cells.

Reviewers' OOT answers are only votes; an admin's decision (taken from the votes, or directly)
goes through `core.labels.decide_oot`, which updates the mapping dictionary and re-applies it
to every example.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from core import csv_safe
from core.auth import Actor, require_admin
from core.review.agreement import CampaignReport
from core.review import tasks as review_tasks
from core.review.campaigns import campaign_for
from core.review.tasks.base import AnsweredItem, TaskResults
from core.review.tasks.oot import ACTIONS as OOT_ACTIONS
from db.models import CampaignItem, Label, OOTMapping, Question, Response, ResponseStatus, User
from db.session import read_session

RESULT_COLUMNS = ["campaign", "item_id", "position", "example_id", "oot_name", "annotator", "question",
                  "kind", "value", "status", "seconds", "updated_at"]
PAGE = 5000


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def write_csv(header: list[str], rows) -> str:
    """The one place review results become CSV text (every cell passes through _cell, and formulas are
    neutralised by csv_safe)."""
    out = io.StringIO()
    writer = csv_safe.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(value) for value in row])
    return out.getvalue()


def results_csv(actor: Actor | None, campaign_id: int) -> str:
    """Every answer of the campaign, one row per (item, annotator, question); admins only."""
    require_admin(actor)
    return write_csv(RESULT_COLUMNS, _answer_rows(actor, campaign_id))  # rows stream from keyset pages


def _answer_rows(actor: Actor, campaign_id: int):
    """The rows of results_csv, read in keyset pages: a large campaign never sits in memory twice."""
    with read_session() as session:
        campaign = campaign_for(session, actor, campaign_id)
        query = (
            select(CampaignItem.id, CampaignItem.position, CampaignItem.example_id, CampaignItem.payload,
                   User.username, Question.name, Question.kind, Response.value, Response.status,
                   Response.seconds_spent, Response.updated_at, Response.id)
            .join(CampaignItem, CampaignItem.id == Response.item_id)
            .join(User, User.id == Response.user_id).join(Question, Question.id == Response.question_id)
            .where(CampaignItem.campaign_id == campaign_id)
            .order_by(Response.id)
        )
        last_id = 0
        while True:
            rows = session.execute(query.where(Response.id > last_id).limit(PAGE)).tuples().all()
            if not rows:
                break
            for item_id, pos, example_id, payload, user, qname, kind, value, status, secs, updated, rid in rows:
                yield [campaign.name, item_id, pos, example_id, (payload or {}).get("oot_name", ""), user, qname,
                       kind, value, getattr(status, "value", status), f"{secs:.1f}",
                       updated.isoformat() if updated else ""]
            last_id = rows[-1][-1]


def submitted_items(session, campaign_id: int) -> tuple[list[AnsweredItem], list[str]]:
    """Every item of the campaign with its submitted answers (annotator -> question -> value), and the
    annotators who answered, sorted."""
    items = {i: AnsweredItem(i, e, dict(p or {}), {}) for i, e, p in session.execute(
        select(CampaignItem.id, CampaignItem.example_id, CampaignItem.payload)
        .where(CampaignItem.campaign_id == campaign_id).order_by(CampaignItem.position)).tuples()}
    for item_id, user, name, value in session.execute(
        select(Response.item_id, User.username, Question.name, Response.value)
        .join(User, User.id == Response.user_id).join(Question, Question.id == Response.question_id)
        .join(CampaignItem, CampaignItem.id == Response.item_id)
        .where(CampaignItem.campaign_id == campaign_id, Response.status == ResponseStatus.submitted)
    ).tuples():
        items[item_id].answers.setdefault(user, {})[name] = value
    annotators = sorted({u for item in items.values() for u in item.answers})
    return list(items.values()), annotators


def task_results(actor: Actor | None, campaign_id: int) -> TaskResults:
    """The campaign's task figures (the paper's measures, with the paper's values); admins only."""
    require_admin(actor)
    with read_session() as session:
        campaign = campaign_for(session, actor, campaign_id)
        items, annotators = submitted_items(session, campaign_id)
    return review_tasks.get(campaign.task).results(items, annotators)


def agreement_csv(report: CampaignReport) -> str:
    """The agreement figures of a report as CSV (question, measure, label or pair, value, items)."""
    rows = []
    for q in report.questions:
        rows.append([q.name, f"krippendorff_alpha_{q.level}", "all", q.alpha, q.items])
        rows += [[q.name, "krippendorff_alpha_nominal", label, value, ""] for label, value in q.per_label.items()]
        rows += [[q.name, "cohen_kappa", f"{p.first} / {p.second}", p.kappa, p.items] for p in q.pairs]
    for t in report.teacher:
        rows.append([t.question, "kappa_vs_teacher", t.annotator, t.kappa, t.items])
        rows.append([t.question, "f1_vs_teacher", t.annotator, t.f1, t.items])
    for p in report.progress:
        rows.append(["", "submitted", p.annotator, p.submitted, p.assigned])
        rows.append(["", "median_seconds_per_item", p.annotator, p.median_seconds, p.submitted])
    return write_csv(["question", "measure", "subject", "value", "items"], rows)


@dataclass(frozen=True)
class OOTVotes:
    item_id: int
    oot_name: str
    occurrences: int
    actions: dict[str, int]  # map / propose / drop -> votes
    targets: dict[str, int]  # taxonomy label -> votes to map onto it
    notes: tuple[str, ...]
    current_action: str  # the mapping's action now (pending until decided)
    current_target: str | None

    @property
    def suggestion(self) -> tuple[str | None, str | None]:
        """The reviewers' majority: (action, target label), or (None, None) without votes."""
        if not self.actions:
            return None, None
        action = max(OOT_ACTIONS, key=lambda a: (self.actions.get(a, 0), -OOT_ACTIONS.index(a)))
        target = max(self.targets, key=lambda t: (self.targets[t], t)) if action == "map" and self.targets else None
        return action, target


def oot_votes(actor: Actor | None, campaign_id: int) -> list[OOTVotes]:
    """Reviewers' answers on each OOT item, with the mapping's current state; admins only."""
    require_admin(actor)
    with read_session() as session:
        campaign = campaign_for(session, actor, campaign_id)
        items = session.execute(select(CampaignItem.id, CampaignItem.payload).where(
            CampaignItem.campaign_id == campaign_id).order_by(CampaignItem.position)).tuples().all()
        answers: dict[int, dict[int, dict[str, Any]]] = {}
        for item_id, user_id, name, value in session.execute(
            select(Response.item_id, Response.user_id, Question.name, Response.value)
            .join(Question, Question.id == Response.question_id).join(CampaignItem, CampaignItem.id == Response.item_id)
            .where(CampaignItem.campaign_id == campaign_id, Response.status == ResponseStatus.submitted)
        ).tuples():
            answers.setdefault(item_id, {}).setdefault(user_id, {})[name] = value
        mappings = {m.source_name: (m, label) for m, label in session.execute(
            select(OOTMapping, Label.name).outerjoin(Label, Label.id == OOTMapping.target_label_id)
            .where(OOTMapping.taxonomy_id == campaign.taxonomy_id)).tuples()}
    result = []
    for item_id, payload in items:
        name = (payload or {}).get("oot_name", "")
        per_user = answers.get(item_id, {}).values()
        actions = Counter(a.get("action") for a in per_user if a.get("action"))
        targets = Counter(a.get("target") for a in per_user if a.get("action") == "map" and a.get("target"))
        notes = tuple(a["note"] for a in per_user if a.get("note"))
        mapping, label = mappings.get(name, (None, None))
        action = getattr(mapping.action, "value", mapping.action) if mapping else "pending"
        result.append(OOTVotes(item_id, name, int((payload or {}).get("occurrences", 0)), dict(actions),
                               dict(targets), notes, str(action), label))
    return result


def decide_oot_item(actor: Actor | None, campaign_id: int, item_id: int, action: str,
                    target_label: str | None = None) -> None:
    """An admin's decision on one OOT item: updates the mapping dictionary and re-applies it."""
    require_admin(actor)
    if action not in OOT_ACTIONS:
        raise ValueError(f"An OOT decision is one of {', '.join(OOT_ACTIONS)}.")
    if action == "map" and not target_label:
        raise ValueError("'map' needs the taxonomy label to map onto.")
    with read_session() as session:
        campaign = campaign_for(session, actor, campaign_id)
        payload = session.scalar(select(CampaignItem.payload).where(
            CampaignItem.id == item_id, CampaignItem.campaign_id == campaign_id))
    if not review_tasks.get(campaign.task).admin_decides or payload is None or not payload.get("oot_name"):
        raise ValueError("This item is not an out-of-taxonomy label.")
    from core.labels import decide_oot  # the lead's module (issue 4): the one place mappings change

    decide_oot(actor, campaign.taxonomy_id, payload["oot_name"], action,
               target_label if action == "map" else None)
