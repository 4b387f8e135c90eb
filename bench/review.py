"""Review at scale: `python -m bench.review` (a few minutes on 2 CPU cores).

Builds a fresh SQLite database (in a temp dir) with 400,000 examples, their teacher suggestions
and 1,000,000 responses, written with executemany in large chunks straight after the Alembic
migration (so every index of the real schema is there), then times the real core functions:
  - next item: `core.review.queue.next_item` for annotators 60% through a 390,000-item campaign;
  - save: `core.review.responses.save_answers(..., submit=True)` of their next items;
  - agreement: `core.review.agreement.campaign_report` of a 10,000-item campaign, 3 annotators per item;
  - queries per next item: SQL statements that `next_item` sends, counted on the engine;
  - concurrent saves: 8 processes (not threads), two per annotator (two tabs each), save drafts,
    toggle, skip, go back and (re-)submit the same 24 items, 10,000 operations in all; then every
    submission they were told succeeded is looked for (the answer in force, or the history) and
    every answer of a submitted item must still be submitted.
Goals: next_item_p95_ms <= 50, save_p95_ms <= 50, agreement_10k_s <= 2, queries_per_next_item <= 4,
concurrent_save_lost = 0. The last line is one JSON object.

    python -m bench.review                                   # the full run
    python -m bench.review --scale 0.01 --saves 400          # a small proof that it works
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

N_EXAMPLES = 400_000
BIG_ITEMS = 390_000  # 2 annotators per item; 235,000 answered x 2 annotators x 2 questions = 940,000 responses
BIG_ANSWERED = 235_000
SMALL_ITEMS = 10_000  # x 3 annotators x 2 questions = 60,000 responses (1,000,000 in all)
N_ANNOTATORS = 20
CHUNK = 50_000
SAMPLES = 300
SEED = 0
SAVES = 10_000
PROCESSES = 8
RACE_ITEMS = 24
RACE_ANNOTATORS = 4


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def chunks(rows, size=CHUNK):
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def build(path: Path) -> dict:
    """Fill the migrated database at `path`; returns the ids the timings need."""
    from core import auth
    from core.taxonomy import GOEMOTIONS, seed_defaults
    from db.session import sqlite_module

    seed_defaults()
    auth.ensure_admin("admin", "admin-pass-123")
    admin = auth.authenticate("admin", "admin-pass-123")
    annotator_ids = [auth.create_user(admin, f"ann{i:02d}", "bench-pass-123", "annotator").id
                     for i in range(N_ANNOTATORS)]
    rng = random.Random(SEED)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    conn = sqlite_module().connect(str(path), isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-400000")  # 400 MB of page cache while the indexes fill
    conn.execute("BEGIN")
    tax_id = conn.execute("SELECT id FROM taxonomies WHERE name = ?", (GOEMOTIONS,)).fetchone()[0]
    labels = conn.execute("SELECT id, name FROM labels WHERE taxonomy_id = ? ORDER BY position", (tax_id,)).fetchall()
    conn.executemany(
        "INSERT INTO examples (id, kind, text, stage, status, source, meta, created_at) VALUES (?, 'contextless', ?, '', "
        "'pending', 'bench', '{}', ?)",
        ((i, f"Utterance number {i}: I cannot believe it happened again.", now) for i in range(1, N_EXAMPLES + 1)))
    suggestions = []
    top = {}
    for i in range(1, N_EXAMPLES + 1):
        first, second = rng.sample(labels, 2)
        top[i] = first[1]
        suggestions.append((i, first[0], round(rng.uniform(0.5, 1.0), 3), "bench-teacher", now))
        suggestions.append((i, second[0], round(rng.uniform(0.0, 0.6), 3), "bench-teacher", now))
    for batch in chunks(suggestions):
        conn.executemany("INSERT INTO suggestions (example_id, label_id, score, agent, created_at) "
                         "VALUES (?, ?, ?, ?, ?)", batch)
    big = _campaign(conn, "bench big", admin.id, tax_id, now)
    small = _campaign(conn, "bench 10k", admin.id, tax_id, now)
    _fill(conn, big, range(1, BIG_ITEMS + 1), annotator_ids, 2, rng, top, now, answered=BIG_ANSWERED / BIG_ITEMS)
    _fill(conn, small, range(BIG_ITEMS + 1, BIG_ITEMS + SMALL_ITEMS + 1), annotator_ids[:3], 3, rng, top, now,
          answered=1.0)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")  # planner statistics, as `sqlite3 .. ANALYZE` after a bulk load
    counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("examples", "responses")}
    conn.close()
    return {"big": big["id"], "small": small["id"], "annotators": annotator_ids, "counts": counts}


def _campaign(conn, name: str, admin_id: int, tax_id: int, now: str) -> dict:
    cur = conn.execute(
        "INSERT INTO campaigns (name, task, guidelines, overlap, min_submissions, show_suggestions, "
        "reveal_responses, taxonomy_id, selection, status, created_by_id, created_at) "
        "VALUES (?, 'verification', '', 2, 2, 1, 0, ?, '{}', 'open', ?, ?)", (name, tax_id, admin_id, now))
    campaign_id = cur.lastrowid
    questions = {}
    for position, (qname, kind, options) in enumerate([
        ("emotions", "multi_label", '{"choices_from": "item", "required": true}'),
        ("confidence", "rating", "{}"),
    ]):
        questions[qname] = conn.execute(
            "INSERT INTO questions (campaign_id, name, title, kind, options, position) VALUES (?, ?, ?, ?, ?, ?)",
            (campaign_id, qname, qname, kind, options, position)).lastrowid
    return {"id": campaign_id, "questions": questions}


def _fill(conn, campaign: dict, example_ids, annotators: list[int], overlap: int, rng, top, now, answered: float):
    """Items, assignments (round robin) and submitted responses for the first `answered` share."""
    campaign_id, questions = campaign["id"], campaign["questions"]
    conn.execute(f"UPDATE campaigns SET overlap = {overlap}, min_submissions = {overlap} WHERE id = {campaign_id}")
    conn.executemany("INSERT INTO campaign_annotators (campaign_id, user_id) VALUES (?, ?)",
                     [(campaign_id, u) for u in annotators])
    example_ids = list(example_ids)
    names = sorted(set(top.values()))
    # The verification task's per-item choices: the top label, 4 more, a distractor, "none".
    choices = {e: json.dumps({"choices": [top[e]] + rng.sample([n for n in names if n != top[e]], 5) + ["none"],
                              "teacher": [top[e]]}) for e in example_ids}
    first_item = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM campaign_items").fetchone()[0]
    done_until = round(len(example_ids) * answered)
    conn.executemany(
        "INSERT INTO campaign_items (id, campaign_id, position, example_id, payload, status, submitted_count) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        ((first_item + p, campaign_id, p, e, choices[e], "completed" if p < done_until else "pending",
          overlap if p < done_until else 0) for p, e in enumerate(example_ids)))
    assignments, responses = [], []
    for p, example_id in enumerate(example_ids):
        item_id, done = first_item + p, p < done_until
        start = (p * overlap) % len(annotators)
        for j in range(overlap):
            user = annotators[(start + j) % len(annotators)]
            assignments.append((item_id, user, campaign_id, p, "submitted" if done else "assigned",
                                now if done else None))
            if done:
                offered = json.loads(choices[example_id])["choices"][:-1]
                emotions = [top[example_id]] if rng.random() < 0.8 else [rng.choice(offered)]
                responses.append((item_id, user, questions["emotions"], json.dumps(emotions), rng.uniform(2, 20)))
                responses.append((item_id, user, questions["confidence"], str(rng.randint(3, 5)), rng.uniform(2, 20)))
    for batch in chunks(assignments):
        conn.executemany("INSERT INTO item_assignments (item_id, user_id, campaign_id, position, status, "
                         "submitted_at) VALUES (?, ?, ?, ?, ?, ?)", batch)
    for batch in chunks(responses):
        conn.executemany("INSERT INTO responses (item_id, user_id, question_id, value, status, seconds_spent, "
                         "version, created_at, updated_at) VALUES (?, ?, ?, ?, 'submitted', ?, 1, ?, ?)",
                         [(*r, now, now) for r in batch])


def time_queue(ids: dict) -> tuple[list[float], list[float]]:
    """Per call: next item (ms) for annotators half-way through, and the save that submits it."""
    from core import auth
    from core.review.queue import next_item
    from core.review.responses import save_answers

    actors = [auth.authenticate(f"ann{i:02d}", "bench-pass-123") for i in range(N_ANNOTATORS)]
    next_ms, save_ms = [], []
    for n in range(SAMPLES):
        actor = actors[n % len(actors)]
        start = time.perf_counter()
        item = next_item(actor, ids["big"])
        next_ms.append((time.perf_counter() - start) * 1000)
        label = item.choices["emotions"][n % len(item.choices["emotions"])]
        start = time.perf_counter()
        save_answers(actor, item.item_id, {"emotions": [label], "confidence": 4}, submit=True, seconds=5.0)
        save_ms.append((time.perf_counter() - start) * 1000)
    return next_ms, save_ms


def queries_per_next_item(ids: dict, calls: int = 50) -> float:
    """SQL statements per `next_item` call, counted on the engine (transaction control left out)."""
    from sqlalchemy import event

    from core import auth
    from core.review.queue import next_item
    from db.session import get_engine

    actors = [auth.authenticate(f"ann{i:02d}", "bench-pass-123") for i in range(N_ANNOTATORS)]
    counted = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().split(None, 1)[0].upper() in ("SELECT", "WITH", "INSERT", "UPDATE", "DELETE"):
            counted.append(statement)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", count)
    try:
        for n in range(calls):
            next_item(actors[n % len(actors)], ids["big"])
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(counted) / calls


def time_agreement(ids: dict) -> tuple[float, object]:
    from core import auth
    from core.review.agreement import campaign_report

    admin = auth.authenticate("admin", "admin-pass-123")
    start = time.perf_counter()
    report = campaign_report(admin, ids["small"])
    return time.perf_counter() - start, report


def race_campaign() -> dict:
    """A verification campaign of RACE_ITEMS items that RACE_ANNOTATORS annotators all answer."""
    from core import auth
    from core.review.campaigns import create_campaign
    from core.review.selection import Selection

    admin = auth.authenticate("admin", "admin-pass-123")
    people = [auth.create_user(admin, f"race{i}", "bench-pass-123", "annotator") for i in range(RACE_ANNOTATORS)]
    campaign = create_campaign(admin, name="bench race", task="verification", annotator_ids=[p.id for p in people],
                               overlap=RACE_ANNOTATORS, selection=Selection(example_ids=list(range(1, RACE_ITEMS + 1))))
    return {"campaign": campaign.id, "annotators": [(p.id, p.username) for p in people]}


def race_worker(url: str, home: str, campaign_id: int, annotator: tuple[int, str], operations: int, seed: int,
                log_path: str) -> None:
    """One process (a tab): random saves, toggles, skips, backs and submissions on the shared items.
    Logs every submitted (item, question, version, value) that save_answers reported."""
    os.environ["DATABASE_URL"], os.environ["EMOFORGE_HOME"] = url, home
    from core.auth import Actor, Role
    from core.review.queue import get_item, next_item, previous_item
    from core.review.questions import AnswerError
    from core.review.responses import ConflictError, save_answers, skip_item

    actor = Actor(annotator[0], annotator[1], Role.annotator)
    rng = random.Random(seed)
    item = next_item(actor, campaign_id) or previous_item(actor, campaign_id, None)
    with open(log_path, "w") as log:
        for _ in range(operations):
            offered = item.choices["emotions"][:-1]
            answers = {"emotions": sorted(rng.sample(offered, rng.randint(1, 2)))}
            action = rng.random()
            try:
                if action < 0.35:  # a toggle: a draft, or a new version of a submitted answer
                    result = save_answers(actor, item.item_id, answers, submit=False, versions=item.versions)
                elif action < 0.7:
                    result = save_answers(actor, item.item_id, answers, submit=True, versions=item.versions)
                else:
                    result = save_answers(actor, item.item_id, dict(item.answers) or answers, submit=False,
                                          versions=item.versions)  # Back / Skip save first
                if result.submitted:
                    for name, version in result.versions.items():
                        log.write(json.dumps([item.item_id, name, version, answers if action < 0.7 and name == "emotions"
                                              else None]) + "\n")
            except (ConflictError, AnswerError):
                pass  # refused, not lost: the other tab's answer stands
            move = rng.random()
            if move < 0.3:
                item = previous_item(actor, campaign_id, item.position) or item
            elif move < 0.5:
                skip_item(actor, item.item_id)
                item = next_item(actor, campaign_id) or item
            elif move < 0.8:
                item = next_item(actor, campaign_id) or previous_item(actor, campaign_id, None)
            item = get_item(actor, campaign_id, item.item_id)  # the page reloads what it shows


def concurrent_saves(url: str, home: str, race: dict, saves: int, processes: int) -> dict:
    """Run the race in `processes` processes (two per annotator), then look for every reported submission."""
    context = multiprocessing.get_context("spawn")
    logs = [str(Path(home) / f"race-{k}.jsonl") for k in range(processes)]
    per = saves // processes
    workers = [context.Process(target=race_worker, args=(url, home, race["campaign"],
                                                         tuple(race["annotators"][k % len(race["annotators"])]),
                                                         per, SEED + k, logs[k])) for k in range(processes)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    seconds = time.perf_counter() - start
    failed = sum(1 for w in workers if w.exitcode != 0)
    return {**check_race(race, logs), "race_seconds": round(seconds, 1), "race_processes_failed": failed}


def check_race(race: dict, logs: list[str]) -> dict:
    from sqlalchemy import select

    from db.models import CampaignItem, ItemAssignment, Question, Response, ResponseVersion
    from db.session import read_session

    users = {name: uid for uid, name in race["annotators"]}
    with read_session() as session:
        current = {(r.item_id, r.user_id, q): (r.version, r.value, str(getattr(r.status, "value", r.status)))
                   for r, q in session.execute(select(Response, Question.name)
                                               .join(Question, Question.id == Response.question_id))}
        history = {(item, user, q, version): value for item, user, q, version, value in session.execute(
            select(Response.item_id, Response.user_id, Question.name, ResponseVersion.version, ResponseVersion.value)
            .join(Response, Response.id == ResponseVersion.response_id)
            .join(Question, Question.id == Response.question_id))}
        submitted = set(session.execute(select(ItemAssignment.item_id, ItemAssignment.user_id)
                                        .where(ItemAssignment.status == "submitted")))
        counts = dict(session.execute(select(CampaignItem.id, CampaignItem.submitted_count)
                                      .where(CampaignItem.campaign_id == race["campaign"])).all())
    lost = reported = 0
    for k, path in enumerate(logs):
        user = users[race["annotators"][k % len(race["annotators"])][1]]
        for line in Path(path).read_text().splitlines():
            item, name, version, value = json.loads(line)
            reported += 1
            now = current.get((item, user, name))
            found = (now is not None and now[0] == version) or (item, user, name, version) in history
            if value is not None and found:  # the same answer (stored in the item's order of choices)
                stored = now[1] if now and now[0] == version else history.get((item, user, name, version))
                found = sorted(stored or []) == sorted(value["emotions"])
            lost += not found
    downgraded = sum(1 for (item, user, _q), (_v, _value, status) in current.items()
                     if (item, user) in submitted and status != "submitted")
    per_item = {}
    for item, _user in submitted:
        per_item[item] = per_item.get(item, 0) + 1
    miscounted = sum(1 for item, n in counts.items() if per_item.get(item, 0) != n)
    return {"concurrent_save_lost": lost + downgraded + miscounted, "submissions_reported": reported,
            "downgraded": downgraded, "miscounted_items": miscounted, "history_rows": len(history)}


def main() -> None:
    global N_EXAMPLES, BIG_ITEMS, BIG_ANSWERED, SMALL_ITEMS, SAMPLES
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="share of the full sizes (0.01: a quick proof)")
    parser.add_argument("--saves", type=int, default=SAVES, help="operations of the concurrent-save race, in all")
    parser.add_argument("--processes", type=int, default=PROCESSES)
    args = parser.parse_args()
    if args.scale != 1.0:
        N_EXAMPLES, BIG_ITEMS = int(N_EXAMPLES * args.scale), int(BIG_ITEMS * args.scale)
        BIG_ANSWERED, SMALL_ITEMS = int(BIG_ANSWERED * args.scale), int(SMALL_ITEMS * args.scale)
        SAMPLES = min(SAMPLES, BIG_ITEMS - BIG_ANSWERED)
    with tempfile.TemporaryDirectory(prefix="bench-review-") as tmp:
        path = Path(tmp) / "review.db"
        os.environ["EMOFORGE_HOME"] = tmp
        os.environ["DATABASE_URL"] = f"sqlite:///{path}"
        from core import auth
        from db.migrate import upgrade

        # Bench users need no production-cost password hashing (not what is measured).
        from argon2 import PasswordHasher

        auth._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        upgrade(os.environ["DATABASE_URL"])
        start = time.perf_counter()
        ids = build(path)
        print(f"built {ids['counts']['examples']} examples and {ids['counts']['responses']} responses "
              f"in {time.perf_counter() - start:.1f} s", flush=True)
        next_ms, save_ms = time_queue(ids)
        print(f"next item over {SAMPLES} calls: median {statistics.median(next_ms):.1f} ms, "
              f"p95 {percentile(next_ms, 0.95):.1f} ms", flush=True)
        print(f"save (submit) over {SAMPLES} calls: median {statistics.median(save_ms):.1f} ms, "
              f"p95 {percentile(save_ms, 0.95):.1f} ms", flush=True)
        queries = queries_per_next_item(ids)
        print(f"queries per next item: {queries:.1f}", flush=True)
        seconds, report = time_agreement(ids)
        alphas = {q.name: None if q.alpha is None else round(q.alpha, 3) for q in report.questions}
        print(f"agreement of the 10,000-item campaign: {seconds:.2f} s (alpha {alphas}, "
              f"{len(report.teacher)} annotator-vs-teacher rows)", flush=True)
        race = race_campaign()
        from db.session import dispose_engines

        dispose_engines()  # the race processes open their own connections
        raced = concurrent_saves(os.environ["DATABASE_URL"], tmp, race, args.saves, args.processes)
        print(f"concurrent saves: {args.saves} operations in {args.processes} processes, {raced}", flush=True)
        dispose_engines()
    print(json.dumps({"bench": "review", "scale": args.scale, "next_item_p95_ms": round(percentile(next_ms, 0.95), 1),
                      "save_p95_ms": round(percentile(save_ms, 0.95), 1), "agreement_10k_s": round(seconds, 2),
                      "queries_per_next_item": round(queries, 2), "concurrent_save_lost": raced["concurrent_save_lost"],
                      "concurrent_saves": args.saves}))


if __name__ == "__main__":
    sys.exit(main())
