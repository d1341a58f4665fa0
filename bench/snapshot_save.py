"""`python -m bench.snapshot_save`: what a production book built from --events deployment.succeeded
over --models models costs to snapshot, write, restore, and how long it stalls the event loop
(issue 15 part 3: cost flat in history).

"every release": the book keeping every release (`ProductionBook(keep=None)`, as before it was
bounded) saved as before, encoded and written on the loop; "bounded": the book (KEEP releases per model) whose
periodic save encodes on the loop and writes from a thread (shared.replay.Kept.save_soon). The
stall is the longest gap a 1 ms ticker on the loop sees while one periodic save runs. SQLite in a
temporary folder (WAL, synchronous=FULL: shared.sqlite). Prints a table; exits 1 on a wrong answer.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from shared import snapshot
from shared.events import Candidate, DeploymentSucceeded, Event
from shared.production import KEEP, ProductionBook
from shared.replay import Kept
from shared.snapshot_store import SnapshotStore

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def events(total: int, models: int) -> list[Event]:
    """`total` deployments, round-robin over `models` models, numbered per model by the deployer."""
    template = Candidate(model="m", version="1", artifact_uri="file:///models/m.onnx", artifact_sha256="a" * 64,
                         data_version="2026-01-01", code_commit="3f2c9ab")
    found: list[Event] = []
    for i in range(total):
        model, sequence = f"model-{i % models:04d}", i // models + 1
        candidate = template.model_copy(update={"model": model, "version": f"{sequence}.0.0"})
        found.append(DeploymentSucceeded(
            submission_id=uuid.uuid4(),
            candidate=candidate, target="model-store", location=f"/store/{model}/{sequence}",
            metrics={"accuracy": 0.9, "auc": 0.95}, approval_mode="human", sequence=sequence,
            occurred_at=T0 + timedelta(seconds=i)))
    return found


def timed(action: Callable[[], Any], repetitions: int) -> tuple[float, Any]:
    """Median seconds of `action` over `repetitions`, and its last result."""
    samples, result = [], None
    for _ in range(repetitions):
        started = time.perf_counter()
        result = action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), result


async def stall(kept: Kept, off_loop: bool) -> float:
    """The longest gap a 1 ms ticker sees while one periodic save runs (and its write ends)."""
    gaps: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.05)
    gaps.clear()
    if off_loop:
        kept.save_soon()
        if kept._writing is not None:
            await kept._writing
    else:
        kept.save()
    await asyncio.sleep(0.01)
    stop.set()
    await ticker
    return max(gaps)


def measure(name: str, book: Any, history: list[Event], folder: Path, repetitions: int, off_loop: bool) -> dict:
    started = time.perf_counter()
    for event in history:
        book.apply(event)
    applied = time.perf_counter() - started
    store = SnapshotStore(folder / f"{name}.db")
    to_snapshot, state = timed(book.to_snapshot, repetitions)
    encode, row = timed(lambda: store.encode(name, {("t", 0): len(history)}, state, "now"), repetitions)
    write, _ = timed(lambda: store.write(row), repetitions)
    restore, _ = timed(lambda: ProductionBook(keep=book.keep).restore(snapshot.decode(row.offsets, row.state).state),
                       repetitions)
    kept = Kept(name, book, book.apply, ["t"])
    kept.store = store
    stalls = [asyncio.run(stall(kept, off_loop)) for _ in range(repetitions)]
    store.close()
    return {"apply (all events)": applied, "to_snapshot": to_snapshot, "json encode": encode,
            "write (SQLite)": write, "restore (decode+restore)": restore,
            "loop stall per periodic save": statistics.median(stalls),
            "snapshot MB": (len(row.state) + len(row.offsets)) / 2**20,
            "releases kept": len(state["releases"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args(argv)
    history = events(args.events, args.models)
    with TemporaryDirectory() as tmp:
        before = measure("before", ProductionBook(keep=None), history, Path(tmp), args.repetitions, off_loop=False)
        after_book = ProductionBook()
        after = measure("after", after_book, history, Path(tmp), args.repetitions, off_loop=True)
    print(f"{args.events} deployment.succeeded over {args.models} models; KEEP={KEEP}; "
          f"median of {args.repetitions}")
    print(f"{'':32} {'every':>10} {'bounded':>10}")
    for key in before:
        unit = "" if key in ("snapshot MB", "releases kept") else " ms"
        scale = 1 if unit == "" else 1000
        print(f"{key:32} {before[key] * scale:>10.1f} {after[key] * scale:>10.1f}{unit}")
    expected = args.models * min(KEEP + 1, -(-args.events // args.models))
    last = f"{-(-args.events // args.models)}.0.0"
    if any(after_book.known(f"model-{m:04d}").candidate.version != last for m in range(min(args.models, args.events))):
        print("wrong: a model's production is not its last deployment", file=sys.stderr)
        return 1
    if after["releases kept"] != expected or before["releases kept"] != args.events:
        print(f"wrong: releases kept {after['releases kept']} bounded (expected {expected}), "
              f"{before['releases kept']} unbounded (expected {args.events})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
