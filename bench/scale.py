"""`python -m bench.scale`: the same burst with 1 and with 2 replicas of every service, on the
three-broker cluster (issue 15 part 5), reported as throughput(2) / throughput(1).

1. A throw-away three-node cluster (signoff.kafka_cluster: free ports, its own folder, deleted at
   the end); Signoff's topics made by `signoff topics create` as the admin, with 3 replicas and
   min.insync.replicas 2 (the cluster's SIGNOFF_TOPIC_*) and --partitions partitions, so two members
   of a consumer group each get some; the ACLs applied. PostgreSQL for the state replicas share
   (tests/postgres_server.py: SIGNOFF_TEST_DATABASE_URL, a container, or deploy/postgres.sh), one
   schema, given to every service as SIGNOFF_DATABASE_URL.
2. Replica set 1 (signoff.devstack.Stack: the four services, its own folder and ports); a warm-up,
   then --burst submissions flat out, drained to deployment.succeeded (bench.burst.drain).
3. Replica set 2 beside it (same consumer groups, same keys, same database, same model store); a
   warm-up (the groups rebalance across both), then the same burst again.
4. The table on stdout, the numbers in .data/bench/scale.json: throughputs, their ratio, and how
   the CPU split between the replicas (each replica's share shows it took part of the work).

On a 2-core machine expect little gain: the figure shows whether anything serialises across
replicas, not what more cores would give. A loss, a refusal or a crash fails the run (exit 1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.burst import drain, drained_s, signoff_target, start_stack
from bench.grace import Grace
from bench.infra import ROOT, service_env, write_artifact
from bench.load import Artifact, BenchFailed, submissions
from bench.stats import RunResult
from shared.acl import Table
from shared.admin import apply_acls
from signoff.devstack import Cluster, Stack, signing_env
from signoff.kafka_cluster import throwaway_cluster
from tests.postgres_server import postgres_server

OUT = ROOT / ".data" / "bench"
WORK = OUT / "scale"  # each replica set's logs, kept for a failed run
CLUSTER_DATA = ROOT / ".data" / "kafka-bench-scale"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    p.add_argument("--burst", type=int, default=2000, help="submissions in each burst [2000]")
    p.add_argument("--warmup", type=int, default=200, help="uncounted submissions before each burst [200]")
    p.add_argument("--models", type=int, default=8, help="distinct model names (record keys) [8]")
    p.add_argument("--partitions", type=int, default=3,
                   help="partitions per topic, as `signoff topics create` makes them by default: at least 2, "
                   "so both replicas of a service get some (3: one gets two, the other one) [3]")
    p.add_argument("--no-database", action="store_true",
                   help="no PostgreSQL: each replica keeps its state in its own SQLite files (not shared)")
    p.add_argument("--log-level", help="SIGNOFF_LOG_LEVEL of the services [their default, INFO]")
    args = p.parse_args(argv)
    if not 1 <= args.burst <= 1_000_000 or args.warmup < 10 or args.models < 2 or not 2 <= args.partitions <= 100:
        p.error("--burst 1..1000000, --warmup at least 10, --models at least 2 (keys spread over partitions), "
                "--partitions 2..100")
    return args


def topics_create(cluster: Cluster, partitions: int) -> None:
    """`signoff topics create` as the admin, as an operator runs it on a cluster."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SIGNOFF_"))},
           **cluster.admin.env(), **cluster.topic_env(), "SIGNOFF_TOPIC_PARTITIONS": str(partitions)}
    done = subprocess.run([sys.executable, "-m", "signoff.cli", "topics", "create"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        raise BenchFailed(f"signoff topics create failed ({done.returncode}):\n"
                          f"{done.stdout[-2000:]}{done.stderr[-2000:]}")


def bench(args: argparse.Namespace) -> dict:
    grace = Grace()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(TemporaryDirectory(prefix="scale-", dir=OUT)))
        print("starting the three-broker cluster", flush=True)
        try:
            nodes = stack.enter_context(throwaway_cluster(CLUSTER_DATA))
        except RuntimeError as exc:  # kafka.sh's own message, with the nodes' log tails
            raise BenchFailed(f"the three-broker cluster did not start (on a busy machine, raise kafka.sh's wait: "
                              f"KAFKA_START_TIMEOUT=200): {exc}") from exc
        cluster = nodes.cluster
        topics_create(cluster, args.partitions)
        asyncio.run(apply_acls(cluster.admin, Table()))
        shared = {**signing_env(tmp / "keys", cli_as=None),  # one trust: each replica accepts the other's events
                  "SIGNOFF_TOPIC_PARTITIONS": str(args.partitions)}
        if not args.no_database:
            print("starting PostgreSQL", flush=True)
            shared["SIGNOFF_DATABASE_URL"] = stack.enter_context(postgres_server()).database()
        artifact = write_artifact(tmp / "artifacts")

        def replica(n: int) -> Stack:
            env = {**service_env(cluster.servers, tmp / f"replica-{n}", tmp / "artifacts", args.log_level), **shared,
                   "DEPLOYER_MODEL_STORE": str(tmp / "model-store")}  # one store, as a shared volume
            print(f"starting replica set {n}", flush=True)
            return stack.enter_context(start_stack(WORK / f"replica-{n}", env, cluster.services_env(), tmp))

        stacks = [replica(1)]
        one = run_set(stacks, cluster, "1 replica", args, artifact, grace)
        stacks.append(replica(2))
        two = run_set(stacks, cluster, "2 replicas", args, artifact, grace)
    return {"one_replica": one.as_dict() | {"drained_seconds": drained_s(one)},
            "two_replicas": two.as_dict() | {"drained_seconds": drained_s(two)} | {"cpu_share": shares(two)},
            "ratio_throughput_two_over_one": two.throughput_per_s / one.throughput_per_s,
            "database": "postgresql" if not args.no_database else "sqlite per replica"}


def run_set(stacks: list[Stack], cluster: Cluster, label: str, args: argparse.Namespace, artifact: Artifact,
            grace: Grace) -> RunResult:
    target = signoff_target(cluster.admin, stacks)
    tag = f"r{len(stacks)}"
    drain(target, f"warm-up {label}", submissions(f"warm-{tag}", args.warmup, args.models, artifact), grace)
    return drain(target, f"burst {label}", submissions(f"burst-{tag}", args.burst, args.models, artifact), grace)


def shares(result: RunResult) -> dict[str, float]:
    """Per service, the fraction of its CPU the second replica spent (0.5: an even split; 0: idle)."""
    out = {}
    for name, ms in result.cpu_ms.items():
        if name.endswith("#1") and (other := result.cpu_ms.get(name[:-2] + "#2")) is not None and ms + other > 0:
            out[name[:-2]] = round(other / (ms + other), 2)
    return out


def table(report: dict) -> str:
    one, two = report["one_replica"], report["two_replicas"]
    rows = [("burst drained to deployment.succeeded, s", one["drained_seconds"], two["drained_seconds"]),
            ("throughput, deployments/s", one["throughput_per_s"], two["throughput_per_s"]),
            ("p50 submission to deployment, s", one["p50_ms"] / 1e3, two["p50_ms"] / 1e3),
            ("p99 submission to deployment, s", one["p99_ms"] / 1e3, two["p99_ms"] / 1e3),
            # Not part of the run: when it differs much between the two columns, so does the machine.
            ("other processes' load meanwhile, cores", one["other_load_cores"] or 0.0, two["other_load_cores"] or 0.0)]
    width = max(len(r[0]) for r in rows)
    title = f"burst of {one['count']}, 3 brokers"
    lines = [f"{title:<{width}} | {'1 replica':>9} | {'2 replicas':>10} | {'2/1':>6}",
             f"{'-' * width}-+-{'-' * 9}-+-{'-' * 10}-+-{'-' * 6}"]
    lines += [f"{name:<{width}} | {a:>9.1f} | {b:>10.1f} | " + (f"{b / a:>6.2f}" if a else f"{'-':>6}")
              for name, a, b in rows]
    return "\n".join(lines)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM: unwind like Ctrl-C, so every `finally` stops what it started


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out = OUT / "scale.json"
    OUT.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)  # never leave an earlier run's numbers looking current
    shutil.rmtree(WORK, ignore_errors=True)
    signal.signal(signal.SIGTERM, _interrupt)
    started_at, started = datetime.now(UTC), time.monotonic()
    try:
        report = bench(args)
    except BenchFailed as exc:
        print(f"BENCH FAILED: {exc}\n(service logs in {WORK})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: everything started was stopped", file=sys.stderr)
        return 130
    wall = time.monotonic() - started
    print("\n" + table(report))
    print(f"replica ratio, throughput(2)/throughput(1): {report['ratio_throughput_two_over_one']:.2f} "
          f"({os.cpu_count()} cores; state: {report['database']}); the second replica's share of each service's "
          f"CPU: {report['two_replicas']['cpu_share']}")
    print(f"wall time {wall:.0f} s (cluster, PostgreSQL, services and warm-ups included)")
    results = {"started_at": started_at.isoformat(), "wall_seconds": round(wall, 1), "config": vars(args),
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "platform": platform.platform()}, **report}
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
