"""`python -m bench.record`: `signoff audit MODEL --at T` and `signoff verify` on a big history,
beside the same queries on an empty system (issue 12: answers within 1 s and within 2x of empty).

1. Two throw-away brokers (bench.infra.kafka_broker: own ports and data dirs, deleted at the end),
   Signoff's topics and ACLs applied as the admin, and a key for every principal with the trust
   file (`signoff keys init`). Everything else under a temporary folder in .data/bench.
2. "empty": one model's history (1.0.0 approved by alice, 2.0.0 automatically, rolled back to 1.0.0;
   bench.record_history), signed as the services sign, published, indexed, and its model store
   written by the deployer's code. "full": the same, plus --models models of 100 events each
   (100,000 by default), published batched (acks=all) and indexed once into its own index (the
   one-time cost, reported with its rate), and a store with each model's two latest versions.
3. After an uncounted round, interleaved (empty, full, full, empty, ...), --repetitions times: the
   queries in-process and as the commands a user runs (bench.record_measure), beside `python -c pass`
   and `python -c "import signoff.cli"`: the median, p95 and full/empty ratio of each.
4. The table on stdout, the figures in .data/bench/record.json. A wrong answer (the version and
   approver at T, the verdict) exits 1; timing never does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

from aiokafka import AIOKafkaProducer

from bench import record_history as history
from bench import record_lookups
from bench import record_measure as m
from bench.infra import ROOT, kafka_broker
from bench.load import BenchFailed
from shared import codec, signing, topics
from shared.acl import Table
from shared.admin import apply_acls, ensure_topics
from shared.audit.feed import catch_up
from shared.audit.index import Index
from shared.kafka import KafkaAccess
from signoff.devstack import Cluster, as_principal
from signoff.keys_cli import STACK, TRUST_FILE, init

OUT = ROOT / ".data" / "bench"
MODEL = "audited-model"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
WANT = m.Expected(MODEL, T0 + timedelta(hours=3), "1.0.0", "alice")  # after the rollback to 1.0.0


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.record", description=__doc__.split("\n")[0])
    p.add_argument("--models", type=int, default=1000, help="models in the full system, 100 events each [1000]")
    p.add_argument("--repetitions", type=int, default=20, help="timed runs of each measure per system [20]")
    p.add_argument("--before", action="store_true", help="also time history and revoke's lookup as they "
                   "read the topics before the audit index answered them (slow on the full system)")
    p.add_argument("--artifact-mib", type=float, default=1.0, help="size of the audited model's artifact [1]")
    p.add_argument("--kafka-ports", type=int, nargs=4, default=[9492, 9493, 9494, 9495],
                   metavar=("EMPTY", "EMPTY_CONTROLLER", "FULL", "FULL_CONTROLLER"))
    args = p.parse_args(argv)
    if not 2 <= args.models <= 100_000 or not 3 <= args.repetitions <= 1000 or not 0 < args.artifact_mib <= 1024:
        # model-0001 is also audited on its own (a model of 100 events): at least two models
        p.error("--models 2..100000, --repetitions 3..1000, --artifact-mib above 0 and at most 1024")
    return args


async def publish(kafka: KafkaAccess, records: list[codec.Record]) -> None:
    """All of `records`, in order per key, batched; returns once the broker acknowledged each (acks=all)."""
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all", enable_idempotence=True, linger_ms=20,
                                max_batch_size=1 << 20)
    await producer.start()
    try:
        for start in range(0, len(records), 5000):
            sent = [await producer.send(r.topic, r.value, key=r.key,
                                        headers=[(k, v.encode()) for k, v in r.headers.items()])
                    for r in records[start:start + 5000]]
            await asyncio.gather(*sent)
    finally:
        await producer.stop()


def prepare(name: str, cluster: Cluster, work: Path, keys: Path, models: int,
            artifact_bytes: int) -> tuple[m.System, dict]:
    """One system: its history published and indexed, its store written; and what that cost."""
    asyncio.run(ensure_topics(cluster.admin, 3, topics=topics.ALL_TOPICS))
    asyncio.run(apply_acls(cluster.admin, Table()))
    signers = {role: signing.load_private(keys / f"{name_}.pem", None, file_variable=name_, env_variable="-")
               for name_, role in STACK.items()}
    store, cost = work / name / "model-store", {}
    started = time.perf_counter()
    target, one = history.target_chain(MODEL, T0, store, signers["deployer"], artifact_bytes)
    events = list(target.events)
    for i in range(models if name == "full" else 0):
        start = T0 - timedelta(days=200) + timedelta(minutes=i)
        events += history.busy_chain(f"model-{i:04d}", start, store, signers["deployer"], revoke=i % 10 == 0).events
    records = history.signed(events, signers)
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
        if progress.indexed != len(events) or index.count() != len(events):
            raise m.WrongAnswer(f"{name}: indexed {progress.indexed} of the {len(events)} events published "
                                f"({progress.problems} problems, {progress.gaps} gaps)")
    finally:
        index.close()
    cost |= {"events": len(events), "index_events_per_s": len(events) / cost["index_seconds"]}
    print(f"  {name}: {len(events)} events, generated and signed in {cost['generate_seconds']:.1f} s, published in "
          f"{cost['publish_seconds']:.1f} s, indexed in {cost['index_seconds']:.1f} s "
          f"({cost['index_events_per_s']:.0f} events/s)", flush=True)
    assert cluster.data_dir is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SIGNOFF_"))}
    env |= {**operator.env(), "SIGNOFF_TRUSTED_KEYS": str(keys / TRUST_FILE), "SIGNOFF_AUDIT_INDEX": str(index_path)}
    env = as_principal(env, cluster.data_dir / "credentials", "operator")  # the password from its file
    return m.System(name, operator, index_path, store / MODEL / WANT.version, env,
                    one.submitted.submission_id), cost


def bench(args: argparse.Namespace) -> dict:
    ports = args.kafka_ports
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(TemporaryDirectory(prefix="record-", dir=OUT)))
        keys = work / "keys"
        init(keys)
        systems, costs = [], {}
        for name, port, controller in (("empty", ports[0], ports[1]), ("full", ports[2], ports[3])):
            print(f"starting the {name} system's broker on {port}", flush=True)
            cluster = stack.enter_context(kafka_broker(port, controller, ROOT / ".data" / f"kafka-bench-record-{name}"))
            system, costs[name] = prepare(name, cluster, work, keys, args.models, int(args.artifact_mib * (1 << 20)))
            systems.append(system)
        keyring = signing.load_trust(keys / TRUST_FILE)
        full = systems[1]
        busy = m.Expected("model-0001", T0, "5.2.0", "bob")  # its last rollback, back to 5.2.0 (bob's)
        extra = {"audit in-process, a model of 100 events": lambda: m.audit_online(full, keyring, busy),
                 "audit --offline in-process, a model of 100 events": lambda: m.audit_offline(full, busy)}
        print(f"measuring: {args.repetitions} repetitions, empty and full interleaved", flush=True)
        timings = m.measure(systems, keyring, WANT, args.repetitions, work, extra,
                            lambda s: record_lookups.measures(s, keyring, WANT, args.before))
    return {"setup": costs, "timings_ms": timings.ms, "summary": m.summary(timings)}


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM: unwind like Ctrl-C, so every `finally` stops what it started


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out = OUT / "record.json"
    OUT.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)  # never leave an earlier run's numbers looking current
    signal.signal(signal.SIGTERM, _interrupt)
    started_at, started, load_before = datetime.now(UTC), time.monotonic(), os.getloadavg()
    try:
        report = bench(args)
    except (BenchFailed, m.WrongAnswer) as exc:
        print(f"BENCH FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: everything started was stopped", file=sys.stderr)
        return 130
    wall = time.monotonic() - started
    full = report["setup"]["full"]
    print(f"\nfull system: {full['events']} events over {args.models} models (+ the audited model's "
          f"{report['setup']['empty']['events']}); indexing them once took {full['index_seconds']:.1f} s "
          f"({full['index_events_per_s']:.0f} events/s)\n")
    print(m.table(report["summary"]))
    print(f"\nmedians and p95 in ms of {args.repetitions} runs each; full/empty is the ratio of the medians; "
          "'< 1 s' is the full system's p95 (the baselines': their own)")
    load = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]}
    print(f"wall time {wall:.0f} s (brokers, publishing and indexing included); load average (1, 5, 15 min) "
          f"{load['before']} before, {load['after']} after, on {os.cpu_count()} cores: the ratios share it, "
          "the absolute figures do not")
    results = {"started_at": started_at.isoformat(), "wall_seconds": round(wall, 1), "config": vars(args),
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "platform": platform.platform(), "load_average": load},
               "expected": {k: str(v) for k, v in asdict(WANT).items()}, **report}
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
