"""What `bench.record` times, and the table it prints. Each measure runs once per system per
repetition, empty and full one after the other, so both see the same moment of a shared machine;
each checks its answer, and a wrong one raises WrongAnswer (the run fails; timing never does).

    audit in-process        Index.open + catch_up (nothing new) + production_at + health, as the CLI
    audit --offline in-proc Index.open + production_at + health: the index alone
    verify in-process       signoff.verify.verify(folder, keyring): the files and the trust file
    signoff audit --at      the command as a user runs it (a new interpreter, the CLI's imports)
    signoff verify          the same, offline
    signoff verify --online the same, reading the revocation topics too
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

from bench.stats import percentile
from shared import signing
from shared.audit import queries
from shared.audit.feed import catch_up
from shared.audit.index import Index
from shared.events import DeploymentRolledBack, ReviewDecided
from shared.kafka import KafkaAccess
from signoff.verify import verify

SIGNOFF = Path(sys.executable).parent / "signoff"
ONE_SECOND_MS = 1000.0


class WrongAnswer(Exception):
    """A query answered something other than the history says."""


@dataclass(frozen=True)
class Expected:
    """The audited model's answer at `at`: `version`, approved by `approver`; restored by a
    rollback `by` when `rolled_back`."""

    model: str
    at: datetime
    version: str
    approver: str
    rolled_back: bool = True


@dataclass(frozen=True)
class System:
    name: str  # "empty" or "full"
    operator: KafkaAccess  # who reads the topics: the operator (shared/acl.py)
    index: Path
    folder: Path  # the audited model's version folder in this system's store
    env: dict[str, str]  # a subprocess' environment: trust file, index, Kafka as the operator
    submission_id: uuid.UUID | None = None  # the audited model's 1.0.0 (revoke's lookup finds it)


@dataclass
class Timings:
    ms: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # measure -> system -> samples

    def add(self, measure: str, system: str, seconds: float) -> None:
        self.ms.setdefault(measure, {}).setdefault(system, []).append(seconds * 1e3)


def check_answer(index: Index, want: Expected) -> None:
    answer = queries.production_at(index, want.model, want.at)
    decision = answer.approval.event if answer.approval is not None else None
    approver = decision.decided_by if isinstance(decision, ReviewDecided) else None
    rolled = answer.set_by is not None and isinstance(answer.set_by.event, DeploymentRolledBack)
    if (answer.state, answer.version, approver, rolled) != ("deployed", want.version, want.approver, want.rolled_back):
        raise WrongAnswer(f"production_at({want.model}, {want.at.isoformat()}) gave {answer.state} "
                          f"{answer.version} approved by {approver} (set by a rollback: {rolled}); expected "
                          f"{want.version} approved by {want.approver} (set by a rollback: {want.rolled_back})")
    health = index.health(want.model)
    if not health.clean:
        raise WrongAnswer(f"the index of {want.model} is not whole: {'; '.join(health.lines()[:3])}")


def audit_online(system: System, keyring: signing.Keyring, want: Expected) -> None:
    index = Index.open(system.index)
    try:
        progress = asyncio.run(catch_up(system.operator, keyring, index))
        if progress.fetched:
            raise WrongAnswer(f"{system.name}: catch_up read {progress.fetched} records; nothing was new")
        check_answer(index, want)
    finally:
        index.close()


def audit_offline(system: System, want: Expected) -> None:
    index = Index.open(system.index)
    try:
        check_answer(index, want)
    finally:
        index.close()


def verify_in_process(system: System, keyring: signing.Keyring, want: Expected) -> None:
    verdict = verify(system.folder, keyring)
    if not verdict.ok or f"{want.model} {want.version} " not in verdict.reason:
        raise WrongAnswer(f"verify {system.folder}: {verdict.line}")


def run(args: list[str], env: dict[str, str], cwd: Path, must_say: tuple[str, ...]) -> None:
    """A command as a user runs it; exit 0 and stdout saying each of `must_say`."""
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or not all(s in done.stdout for s in must_say):
        raise WrongAnswer(f"{' '.join(args[1:])} exited {done.returncode}; expected {must_say} in stdout\n"
                          f"stdout: {done.stdout[-1500:]}\nstderr: {done.stderr[-1500:]}")


def commands(system: System, want: Expected, cwd: Path) -> dict[str, Callable[[], None]]:
    at = want.at.isoformat().replace("+00:00", "Z")
    says_audit = (f"version {want.version} ", want.approver)
    says_verify = (f"ok: {want.model} {want.version} ", f"approved by {want.approver}")
    return {
        "signoff audit MODEL --at T": lambda: run([str(SIGNOFF), "audit", want.model, "--at", at], system.env,
                                                  cwd, says_audit),
        "signoff verify PATH": lambda: run([str(SIGNOFF), "verify", str(system.folder)], system.env, cwd,
                                           says_verify),
        "signoff verify PATH --online": lambda: run([str(SIGNOFF), "verify", str(system.folder), "--online"],
                                                    system.env, cwd, says_verify),
    }


def baselines(env: dict[str, str], cwd: Path) -> dict[str, Callable[[], None]]:
    """What any command pays before its own work: the interpreter, and the CLI's imports."""
    return {"python -c pass": lambda: run([sys.executable, "-c", "pass"], env, cwd, ()),
            "python -c 'import signoff.cli'": lambda: run([sys.executable, "-c", "import signoff.cli"], env, cwd, ())}


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(systems: list[System], keyring: signing.Keyring, want: Expected, repetitions: int, cwd: Path,
            extra: dict[str, Callable[[], None]],
            more: Callable[[System], dict[str, Callable[[], None]]] | None = None) -> Timings:
    """Every measure, `repetitions` times, the systems interleaved; `extra`: full-system-only ones;
    `more`: further measures of each system (bench.record_lookups).
    One uncounted round first (each broker's first requests of a kind, the disk cache), and the
    systems' order swapped every repetition, so neither is always the one that goes first."""
    timings = Timings()
    for rep in range(-1, repetitions):
        record = timings.add if rep >= 0 else _uncounted
        for name, fn in baselines(systems[0].env, cwd).items():
            record(name, "-", timed(fn))
        for system in systems if rep % 2 == 0 else systems[::-1]:
            ops: dict[str, Callable[[], None]] = {
                "audit in-process (catch_up + production_at)": partial(audit_online, system, keyring, want),
                "audit --offline in-process (production_at)": partial(audit_offline, system, want),
                "verify in-process": partial(verify_in_process, system, keyring, want),
                **commands(system, want, cwd), **(more(system) if more is not None else {})}
            for name, fn in ops.items():
                record(name, system.name, timed(fn))
        for name, fn in extra.items():
            record(name, "full", timed(fn))
        print(f"  repetition {rep + 1}/{repetitions} done" if rep >= 0 else "  warm-up round done", flush=True)
    return timings


def _uncounted(*_: object) -> None:
    """The warm-up round's timings go nowhere."""


def summary(timings: Timings) -> dict[str, dict]:
    """Per measure and system: median and p95 (ms); per measure: full/empty (medians) and whether
    the full system's p95 is under a second."""
    out: dict[str, dict] = {}
    for measure_name, by_system in timings.ms.items():
        row: dict = {}
        for system, samples in by_system.items():
            ordered = sorted(samples)
            row[system] = {"median_ms": statistics.median(ordered), "p95_ms": percentile(ordered, 95),
                           "n": len(ordered)}
        if "empty" in row and "full" in row:
            row["ratio_full_over_empty"] = row["full"]["median_ms"] / row["empty"]["median_ms"]
        slowest = row.get("full") or row.get("-")
        if slowest is not None:
            row["under_1s"] = slowest["p95_ms"] < ONE_SECOND_MS
        out[measure_name] = row
    return out


def table(rows: dict[str, dict]) -> str:
    width = max(len(k) for k in rows)
    head = (f"{'measure':<{width}} | {'empty p50':>9} | {'empty p95':>9} | {'full p50':>9} | {'full p95':>9} | "
            f"{'full/empty':>10} | {'< 1 s':>5}")
    lines = [head, "-" * len(head)]

    def cell(row: dict, system: str, key: str) -> str:
        return f"{row[system][key]:9.1f}" if system in row else f"{'':9}"

    for name, row in rows.items():
        if "-" in row:  # a baseline: one column for both
            lines.append(f"{name:<{width}} | {row['-']['median_ms']:9.1f} | {row['-']['p95_ms']:9.1f} | "
                         f"{'':9} | {'':9} | {'':10} | {'yes' if row['under_1s'] else 'NO':>5}")
            continue
        ratio = f"{row['ratio_full_over_empty']:10.2f}" if "ratio_full_over_empty" in row else f"{'':10}"
        lines.append(f"{name:<{width}} | {cell(row, 'empty', 'median_ms')} | {cell(row, 'empty', 'p95_ms')} | "
                     f"{cell(row, 'full', 'median_ms')} | {cell(row, 'full', 'p95_ms')} | {ratio} | "
                     f"{'yes' if row['under_1s'] else 'NO':>5}")
    return "\n".join(lines)
