"""Now or by the worker: where a page's long operation runs is decided here, not in the pages.

Small work runs in the request and the page shows its report; large work (big uploads, a freeze
or a bulk decision over many examples) becomes a worker job and the page shows the job's id. Each
operation has one core function that decides (`corpus.import_or_enqueue`,
`importing.import_or_enqueue`, `versions.freeze_or_enqueue`, `actions.decide_or_enqueue`) and
returns an `Outcome`: the report, or the queued job ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

UPLOAD_BYTES = 2 * 1024 * 1024  # uploads smaller than this (all files together) are imported at once
EXAMPLES = 20_000  # a freeze or a bulk decision over more examples holds a long transaction: the worker's

Report = TypeVar("Report")


@dataclass(frozen=True)
class Outcome(Generic[Report]):
    """What a page operation did: its report when it ran now, else the ids of the jobs it queued."""

    report: Report | None = None
    job_ids: tuple[int, ...] = ()
    detail: dict[str, Any] | None = None  # extra facts for the page (e.g. a queued bulk action's batch id)

    @property
    def queued(self) -> bool:
        return bool(self.job_ids)

    @property
    def job_id(self) -> int | None:
        return self.job_ids[0] if self.job_ids else None


def upload_runs_now(total_bytes: int) -> bool:
    return total_bytes < UPLOAD_BYTES


def examples_run_now(count: int) -> bool:
    return count <= EXAMPLES
