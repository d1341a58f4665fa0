"""`python -m bench.startup`: service start-up and the commands that read history, on an empty
system and on one with 100,000 historical events (issue 15 part 3: cost flat in history).

1. Two throw-away brokers (bench.infra.kafka_broker), Signoff's topics and ACLs, one key set
   (`signoff keys init`). "empty": the audited model's 11 events (bench.record_history.target_chain);
   "full": the same plus --models models of 100 events each, older than the audited model's. Each
   record carries its event's time as its Kafka timestamp, published oldest first, as a history
   that grew over months would be; both systems indexed once (the audit index the CLI reads).
2. The services' consumer groups committed at the topics' ends, as if they had handled the
   history (a service that has run never starts its groups from offset 0; what it rebuilds at
   start, by replay or snapshot, is what this measures).
3. Interleaved (empty, full, full, empty, ...), --repetitions times after one uncounted round:
   - each service's start-up: process start to its ready line (signoff.devstack.Stack.start), the
     four one after the other, then stopped; a restart: each system's state folder (its snapshots
     among it) is kept from one start to the next, the uncounted first start finding it empty;
     then the web console's (to uvicorn's "Application startup complete": its projection restored
     from its snapshot and the index caught up; its own audit index in the state folder, built by
     the uncounted first start); `--services console` measures the console alone;
   - `signoff watch ID` (the audited model's 1.0.0: its whole timeline), `signoff history MODEL`,
     `signoff status MODEL`, as a user runs them (a new interpreter each); and `signoff revoke`'s
     lookup of the submission in-process (the command itself would publish a revocation).
4. A table with the medians and the ratio full/empty per row; the figures in .data/bench/startup.json.
A wrong answer exits 1; timing never does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench import record_history as history
from bench import record_lookups
from bench import record_measure as m
from bench.infra import ROOT, kafka_broker, service_env, write_artifact
from bench.load import BenchFailed
from bench.stats import percentile
from shared import codec, signing, topics
from shared.acl import CONSOLE as CONSOLE_PRINCIPAL
from shared.acl import Table
from shared.admin import apply_acls, ensure_topics
from shared.audit.feed import catch_up
from shared.audit.index import Index
from shared.events import Event
from shared.kafka import KafkaAccess
from signoff.devstack import CONSOLE, PRINCIPALS, SERVICES, Cluster, Stack, as_principal, free_port, signing_env
from signoff.keys_cli import STACK, TRUST_FILE, init

OUT = ROOT / ".data" / "bench"
WORK = OUT / "startup"  # the services' logs, kept for a failed run
MODEL = "audited-model"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
SYSTEMS = ("empty", "full")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n")[0])
    p.add_argument("--models", type=int, default=1000, help="models in the full system, 100 events each [1000]")
    p.add_argument("--repetitions", type=int, default=3, help="timed rounds per system [3]")
    p.add_argument("--kafka-ports", type=int, nargs=4, default=[9692, 9693, 9694, 9695],
                   metavar=("EMPTY", "EMPTY_CONTROLLER", "FULL", "FULL_CONTROLLER"))
    p.add_argument("--start-timeout", type=float, default=300.0,
                   help="seconds a service may take to print its ready line [300]")
    p.add_argument("--services", nargs="+", choices=(*SERVICES, CONSOLE), default=[*SERVICES, CONSOLE],
                   help="whose start-up to measure [the four services and the console]")
    args = p.parse_args(argv)
    if not 1 <= args.models <= 100_000 or not 1 <= args.repetitions <= 100:
        p.error("--models 1..100000, --repetitions 1..100")
    return args


async def publish(kafka: KafkaAccess, records: list[tuple[codec.Record, int]]) -> None:
    """Each record with its Kafka timestamp (ms), in order per key, batched; returns once each is
    acknowledged (acks=all)."""
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all", enable_idempotence=True, linger_ms=20,
                                max_batch_size=1 << 20)
    await producer.start()
    try:
        for start in range(0, len(records), 5000):
            sent = [await producer.send(r.topic, r.value, key=r.key, timestamp_ms=ms,
                                        headers=[(k, v.encode()) for k, v in r.headers.items()])
                    for r, ms in records[start:start + 5000]]
            await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def commit_groups_at_end(kafka: KafkaAccess, prefix: str = "signoff") -> int:
    """Commit every service's consumer group on every consumed topic at that topic's end: the
    services handled the history before. Returns how many groups."""
    probe = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    await probe.start()
    try:
        await probe._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public call
        parts = {t: [TopicPartition(t, p) for p in probe.partitions_for_topic(t) or ()] for t in topics.CONSUMED_TOPICS}
        ends = await probe.end_offsets([tp for tps in parts.values() for tp in tps])
    finally:
        await probe.stop()
    count = 0
    # A fresh broker's first group request finds no coordinator yet; aiokafka retries, and says so loudly.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    for service in (PRINCIPALS[s] for s in SERVICES):  # the SERVICE names: review-notifier, not review_notifier
        for topic, tps in parts.items():
            group = AIOKafkaConsumer(**kafka.client_kwargs(), group_id=f"{prefix}-{service}.{topic}",
                                     enable_auto_commit=False)
            await group.start()
            try:
                group.assign(tps)
                await group.commit({tp: ends[tp] for tp in tps})
                count += 1
            finally:
                await group.stop()
    return count


def history_events(models: int, store: Path, signer: signing.Signer) -> tuple[list[Event], history.Deployed]:
    """`models` busy models' events (bench.record_history.busy_chain, 100 each, the last block's
    releases installed in `store`), oldest first, then the audited model's (target_chain), the
    newest: in the order a history that grew over months was written. Returns them and the
    audited model's 1.0.0."""
    target, one = history.target_chain(MODEL, T0, store, signer, 64 * 1024)
    events: list[Event] = []
    for i in range(models):
        start = T0 - timedelta(days=200) + timedelta(minutes=i)
        events += history.busy_chain(f"model-{i:04d}", start, store, signer, revoke=i % 10 == 0).events
    return sorted(events, key=lambda e: e.occurred_at) + list(target.events), one  # stable: each chain's order kept


def prepare(name: str, cluster: Cluster, work: Path, keys: Path, models: int) -> tuple[m.System, dict]:
    """One system: its history published (event times as timestamps, oldest first), indexed, the
    services' groups at the end. Returns the system and what that cost."""
    asyncio.run(ensure_topics(cluster.admin, 3, topics=topics.ALL_TOPICS))
    asyncio.run(apply_acls(cluster.admin, Table()))
    signers = {role: signing.load_private(keys / f"{n}.pem", None, file_variable=n, env_variable="-")
               for n, role in STACK.items()}
    store, cost = work / name / "model-store", {}
    started = time.perf_counter()
    events, one = history_events(models if name == "full" else 0, store, signers["deployer"])
    records = [(r, int(e.occurred_at.timestamp() * 1000)) for r, e in zip(history.signed(events, signers), events,
                                                                            strict=True)]
    cost["generate_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    asyncio.run(publish(cluster.admin, records))
    cost["publish_seconds"] = time.perf_counter() - started
    operator = cluster.access("operator")
    index_path = work / name / "audit.sqlite"
    index = Index.open(index_path)
    try:
        started = time.perf_counter()
        progress = asyncio.run(catch_up(operator, signing.load_trust(keys / TRUST_FILE), index))
        cost["index_seconds"] = time.perf_counter() - started
        if index.count() != len(events):
            raise m.WrongAnswer(f"{name}: indexed {index.count()} of the {len(events)} events published "
                                f"({progress.problems} problems, {progress.gaps} gaps)")
    finally:
        index.close()
    cost["groups_committed"] = asyncio.run(commit_groups_at_end(cluster.admin))
    cost["events"] = len(events)
    print(f"  {name}: {len(events)} events, generated in {cost['generate_seconds']:.1f} s, published in "
          f"{cost['publish_seconds']:.1f} s, indexed in {cost['index_seconds']:.1f} s", flush=True)
    assert cluster.data_dir is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SIGNOFF_"))}
    env |= {**operator.env(), "SIGNOFF_TRUSTED_KEYS": str(keys / TRUST_FILE), "SIGNOFF_AUDIT_INDEX": str(index_path)}
    env = as_principal(env, cluster.data_dir / "credentials", "operator")
    return m.System(name, operator, index_path, store / MODEL / "1.0.0", env, one.submitted.submission_id), cost


def start_up(cluster: Cluster, keys: Path, state: Path, logs: Path, timeout: float,
             services: tuple[str, ...] = (*SERVICES, CONSOLE), settle: bool = False) -> dict[str, float]:
    """Each service started, one after the other: seconds from process start to its ready line.
    `state`: the system's state folder, kept from one start to the next, as a restarted service
    keeps its own (its snapshots among it); the first start finds it empty. `settle` (the first,
    uncounted start): the console is stopped only once its index reached the topics' ends (its
    /readyz), else the first timed restart would finish building it. All stopped before returning."""
    artifacts = state / "artifacts"
    if not artifacts.exists():
        write_artifact(artifacts)
    env = {**service_env(cluster.servers, state, artifacts, None), **signing_env(keys, cli_as=None)}
    console = {**cluster.access(CONSOLE_PRINCIPAL).env(), "CONSOLE_HTTP_PORT": str(free_port()),
               "CONSOLE_INDEX_DB": str(state / "console" / "audit.sqlite")}  # its snapshot is kept in it
    seconds: dict[str, float] = {}
    with (Stack(logs, env, service_env={**cluster.services_env(), CONSOLE: console}) as stack,
          contextlib.chdir(state)):
        for service in services:
            started = time.perf_counter()
            try:
                stack.start(service, timeout)
            except RuntimeError as exc:
                raise BenchFailed(str(exc)) from exc
            seconds[service] = time.perf_counter() - started
            if settle and service == CONSOLE:
                settled(int(console["CONSOLE_HTTP_PORT"]), timeout)
    return seconds


def settled(port: int, timeout: float) -> None:
    """Wait for the console's /readyz (its index caught up with the topics), at most `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5.0).status_code == 200:
                return
        time.sleep(1.0)  # polling a server's readiness: nothing to wait on but the next answer
    raise BenchFailed(f"the console's index did not catch up with the topics within {timeout:.0f} s")


def commands(system: m.System, cwd: Path) -> dict[str, Callable[[], None]]:
    sig = str(m.SIGNOFF)
    assert system.submission_id is not None
    return {
        "signoff watch ID (1.0.0's timeline)": partial(m.run, [sig, "watch", str(system.submission_id), "--timeout",
                                                               "60"], system.env, cwd, ("alice",)),
        "signoff history MODEL": partial(m.run, [sig, "history", MODEL], system.env, cwd, ("alice",)),
        "signoff status MODEL": partial(m.run, [sig, "status", MODEL], system.env, cwd, ("1.0.0",)),
    }


def bench(args: argparse.Namespace) -> dict:
    ports = args.kafka_ports
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(TemporaryDirectory(prefix="startup-", dir=OUT)))
        keys = work / "keys"
        init(keys)
        keyring = signing.load_trust(keys / TRUST_FILE)
        systems: dict[str, tuple[m.System, Cluster]] = {}
        costs = {}
        for name, port, controller in (("empty", ports[0], ports[1]), ("full", ports[2], ports[3])):
            print(f"starting the {name} system's broker on {port}", flush=True)
            data = ROOT / ".data" / f"kafka-bench-startup-{name}"
            cluster = stack.enter_context(kafka_broker(port, controller, data))
            system, costs[name] = prepare(name, cluster, work, keys, args.models)
            systems[name] = (system, cluster)
        samples: dict[str, dict[str, list[float]]] = {}
        first: dict[str, dict[str, float]] = {}
        for rep in range(-1, args.repetitions):
            for name in SYSTEMS if rep % 2 == 0 else SYSTEMS[::-1]:
                system, cluster = systems[name]
                state = work / name / "state"
                state.mkdir(exist_ok=True)
                got = {f"start-up {s}": v for s, v in start_up(cluster, keys, state, WORK / name, args.start_timeout,
                                                               tuple(args.services), settle=rep < 0).items()}
                if set(SERVICES) <= set(args.services):
                    got["start-up, all four (sum)"] = sum(got[f"start-up {s}"] for s in SERVICES)
                if rep < 0:  # the first start ever: no state, no snapshot yet (one sample, not in the table)
                    first[name] = {k: v * 1e3 for k, v in got.items() if k.startswith("start-up")}
                queries = commands(system, work)
                queries["revoke's lookup in-process (catch_up + index)"] = partial(
                    record_lookups.submission_indexed, system, keyring)
                for measure, fn in queries.items():
                    got[measure] = m.timed(fn)
                print(f"  {name}: " + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in got.items()), flush=True)
                if rep >= 0:
                    for measure, seconds in got.items():
                        samples.setdefault(measure, {}).setdefault(name, []).append(seconds * 1e3)
            print(f"  repetition {rep + 1}/{args.repetitions} done" if rep >= 0 else "  warm-up round done", flush=True)
    return {"setup": costs, "timings_ms": samples, "summary": summary(samples), "first_start_ms": first}


def summary(samples: dict[str, dict[str, list[float]]]) -> dict[str, dict]:
    out = {}
    for measure, by_system in samples.items():
        row: dict = {name: {"median_ms": statistics.median(v), "p95_ms": percentile(sorted(v), 95), "n": len(v)}
                     for name, v in by_system.items()}
        row["ratio_full_over_empty"] = row["full"]["median_ms"] / row["empty"]["median_ms"]
        out[measure] = row
    return out


def table(rows: dict[str, dict], events: dict[str, int]) -> str:
    width = max(len(k) for k in rows)
    empty, full = f"{events['empty']:,} ev", f"{events['full']:,} ev"
    head = f"{'median ms':<{width}} | {empty:>10} | {full:>10} | {'full/empty':>10}"
    lines = [head, "-" * len(head)]
    for name, row in rows.items():
        lines.append(f"{name:<{width}} | {row['empty']['median_ms']:10.1f} | {row['full']['median_ms']:10.1f} | "
                     f"{row['ratio_full_over_empty']:10.2f}")
    return "\n".join(lines)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM: unwind like Ctrl-C, so every `finally` stops what it started


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out = OUT / "startup.json"
    OUT.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)  # never leave an earlier run's numbers looking current
    shutil.rmtree(WORK, ignore_errors=True)  # the services' logs of this run only
    signal.signal(signal.SIGTERM, _interrupt)
    started_at, started, load_before = datetime.now(UTC), time.monotonic(), os.getloadavg()
    try:
        report = bench(args)
    except (BenchFailed, m.WrongAnswer) as exc:
        print(f"BENCH FAILED: {exc}\n(service logs in {WORK})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: everything started was stopped", file=sys.stderr)
        return 130
    wall = time.monotonic() - started
    events = {name: report["setup"][name]["events"] for name in SYSTEMS}
    print("\n" + table(report["summary"], events))
    first = {name: {k.removeprefix("start-up").strip(" ,"): v for k, v in times.items()
                    if k.endswith(("(sum)", CONSOLE))} for name, times in report["first_start_ms"].items()}
    print(f"\nmedians of {args.repetitions} rounds; goal (issue 15): full/empty about 1 on every row. Start-up: "
          "process start to the ready line, a restart (the state folder kept from the previous start), consumer "
          "groups at the topics' end. The very first start (no state, no snapshot; one sample): " + "; ".join(
              f"{what} {first['empty'][what]:.0f} ms empty, {first['full'][what]:.0f} ms full"
              for what in first["empty"]))
    load = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]}
    print(f"wall time {wall:.0f} s (brokers, publishing and indexing included); load average {load['before']} "
          f"before, {load['after']} after, on {os.cpu_count()} cores")
    results = {"started_at": started_at.isoformat(), "wall_seconds": round(wall, 1), "config": vars(args),
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "platform": platform.platform(), "load_average": load}, **report}
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
