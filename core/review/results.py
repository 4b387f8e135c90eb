"""A campaign's results as CSV, and the admin's decisions on out-of-taxonomy labels.

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
from core.review.campaigns import campaign_for
from core.review.questions import OOT_ACTIONS
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


def results_csv(actor: Actor | None, campaign_id: int) -> str:
    """Every answer of the campaign, one row per (item, annotator, question); admins only."""
    require_admin(actor)
    out = io.StringIO()
    writer = csv_safe.writer(out)
    writer.writerow(RESULT_COLUMNS)
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
        while True:  # keyset pages: a large campaign never sits in memory twice
            rows = session.execute(query.where(Response.id > last_id).limit(PAGE)).tuples().all()
            if not rows:
                break
            for item_id, pos, example_id, payload, user, qname, kind, value, status, secs, updated, rid in rows:
                writer.writerow([campaign.name, item_id, pos, _cell(example_id), (payload or {}).get("oot_name", ""),
                                 user, qname, kind, _cell(value), getattr(status, "value", status),
                                 f"{secs:.1f}", updated.isoformat() if updated else ""])
            last_id = rows[-1][-1]
    return out.getvalue()


def agreement_csv(report: CampaignReport) -> str:
    """The agreement figures of a report as CSV (question, measure, label or pair, value, items)."""
    out = io.StringIO()
    writer = csv_safe.writer(out)
    writer.writerow(["question", "measure", "subject", "value", "items"])
    for q in report.questions:
        writer.writerow([q.name, f"krippendorff_alpha_{q.level}", "all", _cell(q.alpha), q.items])
        for label, value in q.per_label.items():
            writer.writerow([q.name, "krippendorff_alpha_nominal", label, _cell(value), ""])
        for pair in q.pairs:
            writer.writerow([q.name, "cohen_kappa", f"{pair.first} / {pair.second}", _cell(pair.kappa), pair.items])
    for t in report.teacher:
        writer.writerow([t.question, "kappa_vs_teacher", t.annotator, _cell(t.kappa), t.items])
        writer.writerow([t.question, "f1_vs_teacher", t.annotator, _cell(t.f1), t.items])
    for p in report.progress:
        writer.writerow(["", "submitted", p.annotator, p.submitted, p.assigned])
        writer.writerow(["", "median_seconds_per_item", p.annotator, _cell(p.median_seconds), p.submitted])
    return out.getvalue()


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
    if campaign.task != "oot" or payload is None or not payload.get("oot_name"):
        raise ValueError("This item is not an out-of-taxonomy label.")
    from core.labels import decide_oot  # the lead's module (issue 4): the one place mappings change

    decide_oot(actor, campaign.taxonomy_id, payload["oot_name"], action,
               target_label if action == "map" else None)
