"""`python -m bench.burst`: a burst of submissions sent at once, drained to deployment.succeeded, for
Signoff and for the bare relay (bench.relay) on the same broker in the same run (issue 15 part 4).

1. A throw-away broker of its own (bench.infra.kafka_broker: own ports and data dir, deleted at
   the end), Signoff's topics and the relay's, one artifact, the four services (signoff.devstack.Stack).
2. An uncounted warm-up through each system (it also gives the payload sizes the relay copies).
3. --burst N submissions published as fast as the producer goes, to Signoff and then to the relay;
   the figure is the time from the first send to the last deployment.succeeded seen (bench.load).
4. The table on stdout, the numbers in .data/bench/burst.json.

How long it waits for the last deployments is derived from the drain rate measured in the run
(bench.grace); only a real loss, a refusal (checks.failed, review.requested, deployment.failed, a
dead letter) or a crashed process fails the run, with a non-zero exit and no numbers.
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
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory

from bench import RELAY_DEPLOYED, RELAY_SUBMITTED, RELAY_TOPICS, cpu
from bench.grace import Grace
from bench.infra import ROOT, Relays, kafka_broker, service_env, write_artifact
from bench.load import Artifact, BenchFailed, measure, payload_sizes, submissions
from bench.run import SIGNOFF_REFUSED, STANDS_FOR
from bench.stats import RunResult, summarize
from shared import topics
from shared.acl import Table
from shared.admin import apply_acls, ensure_topics
from shared.kafka import KafkaAccess
from signoff.devstack import Stack

OUT = ROOT / ".data" / "bench"
LOGS = OUT / "burst"  # the services' and relays' logs (and the stack's keys), kept for a failed run
START_TIMEOUT = 180.0  # seconds a service may take to its ready line on a busy 2-core machine
KAFKA_DATA = ROOT / ".data" / "kafka-bench-burst"  # not bench.run's: the two never share a broker


@dataclass(frozen=True)
class Target:
    """A system under load: where submissions go in, where they come out, what must stay empty,
    which processes must stay alive and whose CPU counts."""

    name: str
    kafka: KafkaAccess  # the driver publishes and reads as the admin
    submit_topic: str
    done_topic: str
    refused_topics: tuple[str, ...]
    dead: Callable[[], list[str]]
    pids: Callable[[], dict[str, int]]


def drain(target: Target, mode: str, events: list, grace: Grace) -> RunResult:
    """Send `events` flat out and wait for each one's deployment; CPU per submission per process."""
    pids = {**target.pids(), "bench driver": os.getpid()}
    before, busy, start = cpu.snapshot(pids), cpu.machine_busy_seconds(), time.monotonic()
    t = asyncio.run(measure(target.kafka, target.submit_topic, target.done_topic, target.refused_topics,
                            events, None, grace, target.dead))
    after, busy_after, seconds = cpu.snapshot(pids), cpu.machine_busy_seconds(), time.monotonic() - start
    result = summarize(target.name, mode, None, t.sent, t.received, t.first_send, t.send_lag_max, t.duplicates,
                       cpu.per_item_ms(before, after, len(events)),
                       cpu.other_load(busy, busy_after, before, after, seconds))
    print(f"  {target.name:<10} {mode:<12} n={result.count:<6} drained in {drained_s(result):7.1f} s  "
          f"{result.throughput_per_s:7.1f}/s  p50={result.p50_ms / 1e3:6.1f} s  p99={result.p99_ms / 1e3:6.1f} s  "
          f"duplicates={result.duplicates}", flush=True)
    print(f"  {'':<10} CPU ms per submission: " + ", ".join(f"{k} {v:.2f}" for k, v in result.cpu_ms.items())
          + f"; other processes on the machine: {result.other_load_cores} cores", flush=True)
    return result


def drained_s(result: RunResult) -> float:
    """First send to the last deployment seen: what `summarize` divides the count by."""
    return result.count / result.throughput_per_s


def signoff_target(kafka: KafkaAccess, stacks: list[Stack]) -> Target:
    """Signoff as run by `stacks` (one per replica set): every process of each must stay alive."""
    def dead() -> list[str]:
        return [f"{s.workdir.name}/{name}" for s in stacks for name, p in s.procs.items() if p.poll() is not None]

    def pids() -> dict[str, int]:
        one = len(stacks) == 1
        return {name if one else f"{name}#{i + 1}": p.pid for i, s in enumerate(stacks) for name, p in s.procs.items()}

    return Target("signoff", kafka, topics.MODEL_SUBMITTED, topics.DEPLOYMENT_SUCCEEDED, SIGNOFF_REFUSED, dead, pids)


def start_stack(workdir: Path, env: dict[str, str], service_env: dict[str, dict[str, str]],
                cwd: Path) -> Stack:
    """The four services, started one after the other; a service that does not start fails the run
    with its log tail. The caller stops the stack."""
    stack = Stack(workdir, env, service_env=service_env)
    try:
        with contextlib.chdir(cwd):  # their working directory: see bench.infra.service_env
            stack.start_all(START_TIMEOUT)
    except RuntimeError as exc:
        stack.stop_all()
        raise BenchFailed(str(exc)) from exc
    return stack


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.burst", description=__doc__.split("\n")[0])
    p.add_argument("--burst", type=int, default=10_000, help="submissions in the burst [10000]")
    p.add_argument("--warmup", type=int, default=200, help="uncounted submissions through each system first [200]")
    p.add_argument("--models", type=int, default=4, help="distinct model names (record keys) [4]")
    p.add_argument("--partitions", type=int, default=3, help="partitions per topic [3]")
    p.add_argument("--kafka-port", type=int, default=9592)
    p.add_argument("--kafka-controller-port", type=int, default=9593)
    p.add_argument("--log-level", help="SIGNOFF_LOG_LEVEL of the services [their default, INFO]")
    args = p.parse_args(argv)
    if not 1 <= args.burst <= 1_000_000 or args.warmup < 10 or args.models < 1:
        p.error("--burst 1..1000000, --warmup at least 10 (it gives the payload sizes the relay copies), "
                "--models at least 1")
    return args


def bench(args: argparse.Namespace) -> dict:
    grace = Grace()
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(kafka_broker(args.kafka_port, args.kafka_controller_port, KAFKA_DATA))
        asyncio.run(ensure_topics(cluster.admin, args.partitions, topics=topics.ALL_TOPICS + RELAY_TOPICS))
        asyncio.run(apply_acls(cluster.admin, Table()))
        # Under .data, not /tmp: the deployer's fsyncs hit the same disk as in real use.
        tmp = Path(stack.enter_context(TemporaryDirectory(prefix="burst-", dir=OUT)))
        artifact = write_artifact(tmp / "artifacts")
        print("starting the services", flush=True)
        services = stack.enter_context(start_stack(LOGS, service_env(cluster.servers, tmp, tmp / "artifacts",
                                                                    args.log_level), cluster.services_env(), tmp))
        kafka_pid = int((KAFKA_DATA / "kafka.pid").read_text().strip())
        signoff = with_pid(signoff_target(cluster.admin, [services]), "kafka", kafka_pid)
        drain(signoff, "warm-up", submissions("warm", args.warmup, args.models, artifact), grace)
        sizes = asyncio.run(payload_sizes(cluster.admin, tuple(STANDS_FOR.values())))
        relays = stack.enter_context(Relays(cluster.admin, {r: sizes[s] for r, s in STANDS_FOR.items()}, LOGS / "logs"))
        relay = with_pid(Target("relay", cluster.admin, RELAY_SUBMITTED, RELAY_DEPLOYED, (), relays.dead,
                                lambda: {f"relay-{h}": p.pid for h, p in relays.procs.items()}), "kafka", kafka_pid)
        drain(relay, "warm-up", submissions("warm", args.warmup, args.models, artifact), grace)
        return bursts(signoff, relay, args.burst, args.models, artifact, grace)


def bursts(signoff: Target, relay: Target, count: int, models: int, artifact: Artifact, grace: Grace) -> dict:
    print(f"burst of {count} submissions, Signoff then the relay", flush=True)
    ours = drain(signoff, "burst", submissions("burst", count, models, artifact), grace)
    theirs = drain(relay, "burst", submissions("burst", count, models, artifact), grace)
    return {"signoff": ours.as_dict() | {"drained_seconds": drained_s(ours)},
            "relay": theirs.as_dict() | {"drained_seconds": drained_s(theirs)},
            "ratio_drain_time_signoff_over_relay": drained_s(ours) / drained_s(theirs)}


def with_pid(target: Target, name: str, pid: int) -> Target:
    """`target` with one more process in its CPU accounting (the broker)."""
    pids = target.pids
    return Target(target.name, target.kafka, target.submit_topic, target.done_topic, target.refused_topics,
                  target.dead, lambda: {**pids(), name: pid})


def table(report: dict) -> str:
    ours, theirs = report["signoff"], report["relay"]
    rows = [("burst drained to deployment.succeeded, s", ours["drained_seconds"], theirs["drained_seconds"]),
            ("throughput over the burst, deployments/s", ours["throughput_per_s"], theirs["throughput_per_s"]),
            ("p50 submission to deployment, s", ours["p50_ms"] / 1e3, theirs["p50_ms"] / 1e3),
            ("p99 submission to deployment, s", ours["p99_ms"] / 1e3, theirs["p99_ms"] / 1e3),
            # Not part of the run: when it differs much between the two columns, so does the machine.
            ("other processes' load meanwhile, cores", ours["other_load_cores"] or 0.0,
             theirs["other_load_cores"] or 0.0)]
    width = max(len(r[0]) for r in rows)
    title = f"burst of {ours['count']}"
    lines = [f"{title:<{width}} | {'signoff':>9} | {'bare relay':>10} | {'signoff/relay':>13}",
             f"{'-' * width}-+-{'-' * 9}-+-{'-' * 10}-+-{'-' * 13}"]
    lines += [f"{name:<{width}} | {a:>9.1f} | {b:>10.1f} | " + (f"{a / b:>13.2f}" if b else f"{'-':>13}")
              for name, a, b in rows]
    return "\n".join(lines)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM: unwind like Ctrl-C, so every `finally` stops what it started


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out = OUT / "burst.json"
    OUT.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)  # never leave an earlier run's numbers looking current
    shutil.rmtree(LOGS / "logs", ignore_errors=True)
    signal.signal(signal.SIGTERM, _interrupt)
    started_at, started = datetime.now(UTC), time.monotonic()
    try:
        report = bench(args)
    except BenchFailed as exc:
        print(f"BENCH FAILED: {exc}\n(service and relay logs in {LOGS / 'logs'})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: everything started was stopped", file=sys.stderr)
        return 130
    wall = time.monotonic() - started
    print("\n" + table(report))
    ratio = report["ratio_drain_time_signoff_over_relay"]
    print(f"goal (issue 15): signoff/relay drain time at most 2.00; measured {ratio:.2f}")
    print(f"wall time {wall:.0f} s (broker, services, relays and warm-ups included)")
    results = {"started_at": started_at.isoformat(), "wall_seconds": round(wall, 1), "config": vars(args),
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "platform": platform.platform()}, **report}
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
