"""Every public core function that changes data checks its caller's role (issue 14, point 5).

The writers are found, not listed: every public function of `core/` that opens a write transaction
(`write_session`, a job's `ctx.batch()`), writes into a folder someone named (`owned_files.writing_into`),
or calls a function that does, directly or further down. Each one is called with an annotator and with
no actor at all, and must answer PermissionDenied having changed nothing. A few kinds are exempt, each
with its reason below; a new writer that is neither checked nor exempt fails this test. (A function that
only writes through a session handed to it is part of its caller's transaction: the caller is checked.)
"""

from __future__ import annotations

import ast
import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.auth import PermissionDenied
from db.models import Base
from db.session import read_session

ROOT = Path(__file__).resolve().parent.parent
WRITE_CALLS = {"write_session", "batch", "writing_into"}  # a write transaction, a job's batch, an export folder

# Exempt by name, with the reason. Anything else that writes must check its caller.
EXEMPT = {
    "core.auth.authenticate": "login: it finds out who is asking",
    "core.sessions.log_in": "login: it finds out who is asking (password, rate limit)",
    "core.sessions.start_session": "login: the session of the person who just proved who they are",
    "core.sessions.log_out": "logout: ends the caller's own session, known by its id",
    "core.sessions.log_out_cookie": "logout: ends the session the browser's own cookie names",
    "core.sessions.redeem_ticket": "login: trades the one-time ticket the login just issued for the cookie",
    "core.auth.ensure_admin": "set-up: the first admin, only while there is no admin",
    "core.bootstrap.main": "set-up (`python -m core.bootstrap`), run from the shell before anyone logs in",
    "core.bootstrap.prepare_database": "set-up: migrations and the built-in seeds",
    "core.bootstrap.create_first_admin": "set-up: the first admin, only while there is no admin",
    "core.corpus.load_demo_corpus": "set-up: the bundled demo corpus, once",
    "core.taxonomy.seed_defaults": "set-up: the built-in taxonomies, once",
    "core.pipeline.templates.seed_defaults": "set-up: version 1 of the built-in prompt templates, once",
    "core.pipeline.templates.active_templates": "a read that seeds the built-in templates on first use",
    "core.pipeline.templates.versions": "a read that seeds the built-in templates on first use",
    "core.pipeline.run.chosen_templates": "a read that seeds the built-in templates on first use",
    "core.pipeline.run.estimate_run": "a read that seeds the built-in templates on first use",
    "core.pipeline.annotate.text_context": "a read that seeds the built-in templates on first use",
    "core.jobs.claim": "the worker's lease protocol: the job's creator was checked when it was queued",
    "core.jobs.heartbeat": "the worker's lease protocol",
    "core.jobs.finish": "the worker's lease protocol",
    "core.worker.main": "the worker process, started from the shell",
    "core.worker.serve": "the worker loop: runs handlers as the system actor (JobContext.actor)",
    "core.worker.run_job": "the worker loop",
    "core.worker.release": "the worker loop: gives a claimed job back",
    "core.cli.main": "the command line: authenticates the user, then passes the actor on",
}

# These must be found by the scan (issue 14 named them); guards the scan itself against going blind.
MUST_BE_FOUND = {
    "core.jobs.enqueue", "core.train.registry.register_model", "core.train.registry.update_metrics",
    "core.train.registry.export_model", "core.train.evaluate.store_evaluation", "core.labels.reapply_all",
    "core.curate.signals.compute_duplicates", "core.curate.signals.compute_review_agreement",
    "core.curate.diversity.compute_diversity", "core.train.label_issues.store_signals",
    "core.curate.actions.decide", "core.datasets.versions.freeze", "core.datasets.export.export_version",
    "core.taxonomy.update_taxonomy",
}


@dataclass
class Function:
    name: str  # module.function
    node: ast.FunctionDef
    calls: set[str] = field(default_factory=set)  # qualified names of what it calls
    writes: bool = False  # opens a write itself

    @property
    def public(self) -> bool:
        return not self.node.name.startswith("_")

    @property
    def first_parameter(self) -> str:
        return self.node.args.args[0].arg if self.node.args.args else ""

    @property
    def is_job_handler(self) -> bool:
        return any(".handler(" in ast.unparse(d) for d in self.node.decorator_list)


def core_functions() -> dict[str, Function]:
    functions: dict[str, Function] = {}
    for path in sorted((ROOT / "core").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        tree = ast.parse(path.read_text())
        imported = _imported_names(tree)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                fn = functions[f"{module}.{node.name}"] = Function(f"{module}.{node.name}", node)
                for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
                    target = call.func
                    if isinstance(target, ast.Name):
                        fn.writes |= target.id in WRITE_CALLS
                        fn.calls.add(imported.get(target.id, f"{module}.{target.id}"))
                    elif isinstance(target, ast.Attribute):
                        fn.writes |= target.attr in WRITE_CALLS
                        if isinstance(target.value, ast.Name):
                            fn.calls.add(f"{imported.get(target.value.id, target.value.id)}.{target.attr}")
    return functions


def _imported_names(tree: ast.Module) -> dict[str, str]:
    """Local name -> qualified name, for every import anywhere in the module (functions import lazily)."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
        elif isinstance(node, ast.Import):
            names.update({a.asname or a.name: a.name for a in node.names})
    return names


def writers() -> dict[str, Function]:
    """Functions that write, directly or through any core function they call (fixed point)."""
    functions = core_functions()
    found = {name for name, fn in functions.items() if fn.writes}
    grew = True
    while grew:
        before = len(found)
        found |= {name for name, fn in functions.items() if fn.calls & found}
        grew = len(found) > before
    return {name: functions[name] for name in sorted(found)}


def must_check(fn: Function) -> bool:
    if not fn.public or fn.name in EXEMPT:
        return False
    if fn.is_job_handler or fn.first_parameter == "ctx":
        return False  # runs inside a claimed job, as the system actor (JobContext.actor)
    if fn.name.startswith("core.cli.cmd_") and not fn.writes:
        return False  # a command: the authenticated actor goes on to checked core functions
    return True


def test_the_scan_finds_the_writers_and_every_exemption_is_still_a_writer():
    found = writers()
    assert MUST_BE_FOUND <= set(found), sorted(MUST_BE_FOUND - set(found))
    assert set(EXEMPT) <= set(found), f"exempt but no longer a writer: {sorted(set(EXEMPT) - set(found))}"
    assert not [fn.name for fn in found.values() if fn.name.startswith("core.cli.cmd_") and fn.writes], \
        "a CLI command writes by itself instead of calling a checked core function"


# --------------------------------------------------------------------------- calling them


@pytest.fixture
def world(admin, annotator):
    """A campaign the annotator is not in, and the other user: what the annotator-level writers check against."""
    from core.review.campaigns import create_campaign
    from core.review.selection import Selection
    from tests.review_support import annotators, make_examples

    [eve] = annotators(admin, "eve")
    [example] = make_examples([{"text": "A line to review.", "labels": {"joy": 0.9}}])
    campaign = create_campaign(admin, name="not ann's", task="verification", annotator_ids=[eve.id],
                               selection=Selection(example_ids=[example]))
    with read_session() as session:
        from db.models import CampaignItem

        item_id = session.scalar(select(CampaignItem.id).where(CampaignItem.campaign_id == campaign.id))
    return {"admin": admin, "campaign_id": campaign.id, "item_id": item_id}


def arguments(fn, world: dict, tmp_path: Path) -> dict:
    """The required arguments after the actor: None, except where the check itself needs a value (the
    annotator-level writers check whose item or password it is). None also proves the role is checked
    before any argument is used."""
    chosen = {
        "item_id": world["item_id"], "campaign_id": world["campaign_id"], "user_id": world["admin"].id,
        "answers": {}, "submit": True, "new_password": "long-enough-password", "dest": tmp_path / "denied",
        "out": tmp_path / "denied",
    }
    parameters = list(inspect.signature(fn).parameters.values())[1:]
    return {p.name: chosen.get(p.name) for p in parameters
            if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            or p.name in ("dest", "out")}


def row_counts() -> dict[str, int]:
    with read_session() as session:
        return {t.name: session.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}


def test_every_writer_refuses_an_annotator_and_no_actor(world, annotator, tmp_path):
    checked = [fn for fn in writers().values() if must_check(fn)]
    assert len(checked) > 60
    before = row_counts()
    wrong = []
    for fn in checked:
        module, name = fn.name.rsplit(".", 1)
        target = getattr(importlib.import_module(module), name)
        for actor in (annotator, None):
            try:
                target(actor, **arguments(target, world, tmp_path))
            except PermissionDenied:
                continue
            except Exception as error:  # noqa: BLE001 - any other outcome is the finding
                wrong.append(f"{fn.name}({actor and actor.role.value}): {type(error).__name__}: {error}")
            else:
                wrong.append(f"{fn.name}({actor and actor.role.value}): no error")
    assert not wrong, "\n".join(wrong)
    assert row_counts() == before, "a refused call changed the database"
    assert not (tmp_path / "denied").exists(), "a refused export touched the folder"
