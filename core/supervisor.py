"""`python -m core.supervisor`: keeps N workers (`python -m core.worker`) running, restarting any that dies.

A worker dies for reasons outside its control (out of memory, a crashed engine, SIGKILL); its job is safe
(another worker resumes it when the lease runs out), but nobody would run the next one. The supervisor
starts a replacement at once, then waits longer after each quick death in a row (doubling up to
LONGEST_WAIT_S), so a worker that cannot start at all (a broken setting) is not restarted in a tight loop.
SIGTERM / SIGINT stop the supervisor: it passes the signal on, so each worker gives its job back.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

log = logging.getLogger("emoforge.supervisor")

FIRST_WAIT_S = 1.0
LONGEST_WAIT_S = 60.0
STABLE_AFTER_S = 60.0  # a worker that ran this long before dying died of something new: start over at once
STOP_GRACE_S = 30.0


@dataclass
class Slot:
    """One worker place: the process in it and how often it died quickly in a row."""

    number: int
    process: subprocess.Popen | None = None
    started: float = 0.0
    quick_deaths: int = 0
    restart_at: float = 0.0
    restarts: int = 0


def restart_delay(quick_deaths: int) -> float:
    """No wait after a worker that ran a while; then 1, 2, 4 ... up to LONGEST_WAIT_S seconds."""
    if quick_deaths <= 0:
        return 0.0
    return min(LONGEST_WAIT_S, FIRST_WAIT_S * 2 ** (quick_deaths - 1))


class Supervisor:
    def __init__(self, command: list[str], workers: int = 1, poll_s: float = 0.5):
        self.command = command
        self.slots = [Slot(number) for number in range(workers)]
        self.poll_s = poll_s
        self.stopping = False

    def start(self, slot: Slot) -> None:
        slot.process = subprocess.Popen(self.command)
        slot.started = time.monotonic()
        log.info("worker %d started (pid %d)", slot.number, slot.process.pid)

    def check(self, slot: Slot, now: float) -> None:
        """Start the slot's worker if it has none, or when its restart wait is over."""
        if slot.process is not None:
            code = slot.process.poll()
            if code is None:
                return
            ran = now - slot.started
            slot.quick_deaths = 0 if ran >= STABLE_AFTER_S else slot.quick_deaths + 1
            slot.restart_at = now + restart_delay(slot.quick_deaths)
            slot.process, slot.restarts = None, slot.restarts + 1
            log.warning("worker %d exited with %s after %.0f s; restarting in %.0f s",
                        slot.number, _describe(code), ran, slot.restart_at - now)
        if now >= slot.restart_at and not self.stopping:  # Ctrl-C reaches the workers too: no restart then
            self.start(slot)

    def run(self) -> int:
        for slot in self.slots:
            self.start(slot)
        while not self.stopping:
            now = time.monotonic()
            for slot in self.slots:
                self.check(slot, now)
            time.sleep(self.poll_s)
        return self.stop_all()

    def request_stop(self, signum, _frame) -> None:
        log.info("supervisor: %s received; stopping the workers", signal.Signals(signum).name)
        self.stopping = True

    def stop_all(self) -> int:
        running = [slot.process for slot in self.slots if slot.process is not None and slot.process.poll() is None]
        for process in running:
            process.terminate()  # the worker gives its job back to the queue and exits 0
        deadline = time.monotonic() + STOP_GRACE_S
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return 0


def _describe(code: int) -> str:
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.supervisor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1, help="how many workers to keep running")
    parser.add_argument("worker_args", nargs=argparse.REMAINDER,
                        help="arguments for each worker after `--` (e.g. -- --kinds import_corpus --lease 30)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s supervisor %(levelname)s %(message)s")
    extra = args.worker_args[1:] if args.worker_args[:1] == ["--"] else args.worker_args
    supervisor = Supervisor([sys.executable, "-m", "core.worker", *extra], workers=args.workers)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
