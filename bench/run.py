"""`python -m bench.run`: Signoff's auto-approve path against a bare aiokafka relay, same broker.

1. A throw-away broker (deploy/kafka/kafka.sh, own ports and data dir), Signoff's topics and the
   relay's, one artifact under a temp folder, the four services (signoff.devstack.Stack).
2. A warm-up through each system (not counted); then for Signoff and then the relay: N
   submissions as fast as possible (throughput, and latency under queueing); then for each a
   run at one steady open-loop rate, half the slower one's throughput unless --rate says
   otherwise (latency without queueing).
3. The table on stdout, the numbers in .data/bench/results.json; for the latency runs also where
   the time goes per hop (validator, policy, deployer, each the broker timestamp of the record it
   produced minus that of the record it consumed), Signoff beside the relay.

Any submission missing after the grace period (derived from the drain rate measured in the run:
see bench/grace.py), refused (checks.failed, review.requested, a dead
letter, deployment.failed) or a crashed process fails the run with a non-zero exit and no numbers.
Everything started is stopped, and the broker's data deleted, on success, error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory

from bench import (
    RELAY_CHECKS,
    RELAY_DECIDED,
    RELAY_DEPLOYED,
    RELAY_HOPS,
    RELAY_SUBMITTED,
    RELAY_TOPICS,
    cpu,
    disk,
    receive,
)
from bench.grace import Grace
from bench.infra import ROOT, Relays, kafka_broker, service_env, write_artifact
from bench.load import BenchFailed, measure, payload_sizes, submissions
from bench.profile import parse_collapsed, render, sampling
from bench.stats import HopResult, RunResult, hop_ratios, hop_table, hops, ratios, summarize, table
from shared import topics
from shared.acl import Table
from shared.admin import apply_acls, ensure_topics
from shared.kafka import KafkaAccess
from signoff.devstack import Stack

OUT = ROOT / ".data" / "bench"
KAFKA_DATA = ROOT / ".data" / "kafka-bench"
# Where an auto-approvable submission must never go: any record there fails the run.
SIGNOFF_REFUSED = (topics.CHECKS_FAILED, topics.REVIEW_REQUESTED, topics.DEPLOYMENT_FAILED,
                   *(topics.dlq(t) for t in topics.CONSUMED_TOPICS))
# The relay topic standing for each Signoff topic, to copy payload sizes across.
STANDS_FOR = {RELAY_SUBMITTED: topics.MODEL_SUBMITTED, RELAY_CHECKS: topics.CHECKS_PASSED,
              RELAY_DECIDED: topics.REVIEW_DECIDED, RELAY_DEPLOYED: topics.DEPLOYMENT_SUCCEEDED}
# Signoff's hops, named by the service doing the work, as bench.RELAY_HOPS names the relay's.
SIGNOFF_HOPS = (
    ("validator", topics.MODEL_SUBMITTED, topics.CHECKS_PASSED),
    ("policy", topics.CHECKS_PASSED, topics.REVIEW_DECIDED),
    ("deployer", topics.REVIEW_DECIDED, topics.DEPLOYMENT_SUCCEEDED),
)


@dataclass(frozen=True)
class System:
    name: str
    kafka: KafkaAccess  # the driver publishes and reads as the admin (it plays the pipelines too)
    submit_topic: str
    done_topic: str
    refused_topics: tuple[str, ...]
    dead: Callable[[], list[str]]
    pids: Callable[[], dict[str, int]]  # the processes doing the work, for CPU accounting
    path: tuple[tuple[str, str, str], ...]  # (service, topic it consumes, topic it produces) per hop

    def run(self, mode: str, events: list, rate: float | None, grace: Grace) -> RunResult:
        return self.run_with_hops(mode, events, rate, grace, per_hop=False)[0]

    def run_with_hops(self, mode: str, events: list, rate: float | None, grace: Grace,
                      per_hop: bool = True) -> tuple[RunResult, list[HopResult]]:
        """The run, and (with `per_hop`) its latency per hop from the path topics' broker stamps.
        Only asked for in the latency runs: reading three more topics costs the driver CPU."""
        pids = {**self.pids(), "kafka": _kafka_pid(), "bench driver": os.getpid()}
        path_topics = tuple(dict.fromkeys(t for _, source, sink in self.path for t in (source, sink)))
        before, busy, start = cpu.snapshot(pids), cpu.machine_busy_seconds(), time.monotonic()
        t = asyncio.run(measure(self.kafka, self.submit_topic, self.done_topic,
                                self.refused_topics, events, rate, grace, self.dead,
                                path_topics if per_hop else ()))
        after, busy_after, seconds = cpu.snapshot(pids), cpu.machine_busy_seconds(), time.monotonic() - start
        result = summarize(self.name, mode, rate, t.sent, t.received, t.first_send, t.send_lag_max,
                           t.duplicates, cpu.per_item_ms(before, after, len(events)),
                           cpu.other_load(busy, busy_after, before, after, seconds))
        print(f"  {self.name:<10} {mode:<10} n={result.count:<5} p50={result.p50_ms:8.1f} ms  "
              f"p99={result.p99_ms:8.1f} ms  max={result.max_ms:8.1f} ms  "
              f"{result.throughput_per_s:7.1f}/s  send lag max={result.send_lag_max_ms:.1f} ms",
              flush=True)
        print(f"  {'':<10} CPU ms per submission: "
              + ", ".join(f"{k} {v:.2f}" for k, v in result.cpu_ms.items())
              + f"; other processes on the machine: {result.other_load_cores} cores", flush=True)
        return result, hops(t.stamps, self.path) if per_hop else []


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=2000, help="submissions per measured run [2000]")
    p.add_argument("--rate", type=float, help="open-loop rate of the latency runs, per second "
                   "[half the slower system's throughput]")
    p.add_argument("--latency-seconds", type=float, default=30.0,
                   help="length of each latency run: min(count, max(200, rate x this)) submissions [30]")
    p.add_argument("--warmup", type=int, default=200,
                   help="uncounted submissions through each system before any run [200]")
    p.add_argument("--models", type=int, default=4, help="distinct model names (record keys) [4]")
    p.add_argument("--partitions", type=int, default=3, help="partitions per topic [3]")
    p.add_argument("--grace-floor", type=float, default=Grace.floor_s,
                   help="least seconds to wait for the missing after the last send or the latest "
                   f"deployment seen [{Grace.floor_s:g}]")
    p.add_argument("--grace-factor", type=float, default=Grace.factor,
                   help="wait this many times what the measured drain rate says the missing need "
                   f"[{Grace.factor:g}]")
    p.add_argument("--grace-max", type=float, default=Grace.cap_s,
                   help=f"most seconds to wait after the last send, however slow the drain [{Grace.cap_s:g}]")
    p.add_argument("--kafka-port", type=int, default=9292)
    p.add_argument("--kafka-controller-port", type=int, default=9293)
    p.add_argument("--py-spy", metavar="PATH", help="py-spy executable: sample each service during Signoff's "
                   "throughput run and print where its CPU went (files in .data/bench/profile) [off]")
    p.add_argument("--log-level", help="SIGNOFF_LOG_LEVEL of the services [their default, INFO]")
    args = p.parse_args(argv)
    if args.count < 1 or args.models < 1 or args.warmup < 10:
        p.error("--count and --models must be at least 1, --warmup at least 10 "
                "(the warm-up also provides the payload sizes the relay copies)")
    try:
        args.grace = Grace(args.grace_floor, args.grace_factor, args.grace_max)
    except ValueError as exc:
        p.error(str(exc))
    return args


def bench(args: argparse.Namespace) -> dict:
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(kafka_broker(args.kafka_port, args.kafka_controller_port, KAFKA_DATA))
        asyncio.run(ensure_topics(cluster.admin, args.partitions, topics=topics.ALL_TOPICS + RELAY_TOPICS))
        asyncio.run(apply_acls(cluster.admin, Table()))
        # Under .data, not /tmp: the deployer's fsyncs must hit the same disk as in real use.
        tmp = Path(stack.enter_context(TemporaryDirectory(prefix="run-", dir=OUT)))
        artifact = write_artifact(tmp / "artifacts")
        env = service_env(cluster.servers, tmp, tmp / "artifacts", args.log_level)
        services = stack.enter_context(Stack(OUT, env, service_env=cluster.services_env()))
        print("starting the services", flush=True)
        try:
            with contextlib.chdir(tmp):  # their working directory: see service_env
                services.start_all()
        except RuntimeError as exc:  # a service that does not start says why in its log tail
            raise BenchFailed(str(exc)) from exc
        signoff = System("signoff", cluster.admin, topics.MODEL_SUBMITTED, topics.DEPLOYMENT_SUCCEEDED,
                         SIGNOFF_REFUSED, lambda: [s for s, p in services.procs.items() if p.poll() is not None],
                         lambda: {s: p.pid for s, p in services.procs.items()}, SIGNOFF_HOPS)
        # Both systems warm (JIT of the broker, connections, group joins) before anything counts;
        # Signoff's warm-up also leaves the events whose sizes the relay copies.
        signoff.run("warm-up", submissions("warm", args.warmup, args.models, artifact), None, args.grace)
        sizes = asyncio.run(payload_sizes(cluster.admin, tuple(STANDS_FOR.values())))
        relay_sizes = {relay: sizes[theirs] for relay, theirs in STANDS_FOR.items()}
        relays = stack.enter_context(Relays(cluster.admin, relay_sizes, OUT / "logs"))
        relay = System("relay", cluster.admin, RELAY_SUBMITTED, RELAY_DEPLOYED, (), relays.dead,
                       lambda: {f"relay-{h}": p.pid for h, p in relays.procs.items()}, RELAY_HOPS)
        relay.run("warm-up", submissions("warm", args.warmup, args.models, artifact), None, args.grace)
        idle = idle_cpu({**signoff.pids(), **relay.pids(), "kafka": _kafka_pid()}, IDLE_SECONDS)

        sampler: contextlib.AbstractContextManager[dict[str, Path]] = (
            sampling(args.py_spy, signoff.pids(), OUT / "profile") if args.py_spy else contextlib.nullcontext({}))
        with sampler as samples:
            signoff_tp = signoff.run("throughput", submissions("tp", args.count, args.models, artifact), None,
                                     args.grace)
        profile = {name: render(name, parse_collapsed(path.read_text())) if path.exists()
                   else f"{name}: no samples (py-spy's reason: {path.with_suffix('.py-spy.log')})"
                   for name, path in samples.items()}
        relay_tp = relay.run("throughput", submissions("tp", args.count, args.models, artifact), None, args.grace)
        rate = args.rate or _nice(min(signoff_tp.throughput_per_s, relay_tp.throughput_per_s) / 2)
        n = min(args.count, max(200, math.ceil(rate * args.latency_seconds)))
        print(f"latency runs: {n} submissions, open loop at {rate:g}/s", flush=True)
        signoff_lat, signoff_hops = signoff.run_with_hops("latency", submissions("lat", n, args.models, artifact),
                                                          rate, args.grace)
        relay_lat, relay_hops = relay.run_with_hops("latency", submissions("lat", n, args.models, artifact),
                                                    rate, args.grace)
        services.stop_all()  # the receive floors run alone, on the records the runs left
        floors = receive_floors(services.env_of("review_notifier"), tmp)
    writes = _deployer_writes()
    return {
        "idle_cpu_ms_per_s": idle,
        "receive_cpu_us_per_record": floors,
        "deployer_writes": writes,
        "runs": {"signoff_throughput": signoff_tp, "relay_throughput": relay_tp,
                 "signoff_latency": signoff_lat, "relay_latency": relay_lat},
        "payload_sizes": {t: {"value_bytes": v, "header_bytes": h} for t, (v, h) in sizes.items()},
        "latency_rate_per_s": rate,
        "profile": profile,
        "hops": {"signoff": signoff_hops, "relay": relay_hops},  # of the latency runs
    }


IDLE_SECONDS = 10.0  # /proc counts CPU in 10 ms ticks: 1 ms/s resolution


def idle_cpu(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """CPU milliseconds per second each process spends with nothing to do (heartbeats, the idle
    fetches of its consumers, its timers), measured over a window with no load. What a run's CPU
    per submission includes of it: this figure divided by the run's rate."""
    before, start = cpu.snapshot(pids), time.monotonic()
    time.sleep(seconds)  # the measurement window itself, not a wait for something to happen
    after, elapsed = cpu.snapshot(pids), time.monotonic() - start
    per_s = {name: round((after[name] - before[name]) * 1e3 / elapsed, 2) for name in before if name in after}
    print(f"  idle (no load, {elapsed:.0f} s), CPU ms per second: "
          + ", ".join(f"{k} {v:.2f}" for k, v in per_s.items()), flush=True)
    return per_s


def receive_floors(env: dict[str, str], cwd: Path) -> dict[str, float]:
    """bench.receive's three modes on deployment.succeeded, one process each (see that module)."""
    print(f"what receiving one record costs (bench.receive: {topics.DEPLOYMENT_SUCCEEDED} drained from "
          "offset 0, one process per mode, as the review-notifier)", flush=True)
    floors: dict[str, float] = {}
    for mode in receive.MODES:
        done = subprocess.run([sys.executable, "-m", "bench.receive", topics.DEPLOYMENT_SUCCEEDED, mode],
                              env=env, cwd=cwd, capture_output=True, text=True, timeout=receive.TIMEOUT_S + 60)
        if done.returncode != 0:  # a diagnostic: reported, never turned into numbers
            print(f"  {mode}: failed ({done.stderr.strip()[-2000:]})", flush=True)
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        floors[mode] = result["cpu_us_per_record"]
        print(f"  {mode:<8} {result['cpu_us_per_record']:8.1f} us CPU per record ({result['records']} records)",
              flush=True)
    return floors


def _deployer_writes() -> dict:
    """A diagnostic beside the run: it calls the deployer's modules directly, so when they change
    shape it reports that instead of failing the measured runs."""
    print("timing the deployer's durable writes alone (services and broker stopped)", flush=True)
    try:
        with TemporaryDirectory(prefix="disk-", dir=OUT) as folder:
            artifact = write_artifact(Path(folder) / "artifacts")
            return disk.deployer_writes(Path(folder), artifact)
    except Exception as exc:  # noqa: BLE001 - reported, never turned into numbers
        print(f"  skipped: {exc!r}", flush=True)
        return {"skipped": repr(exc)}


def _nice(rate: float) -> float:
    """Round down to two significant digits, so the chosen rate reads as chosen."""
    if rate < 1:
        raise BenchFailed(f"throughput of {rate * 2:.2f}/s is too low to pick a latency rate")
    scale = 10 ** (math.floor(math.log10(rate)) - 1)
    return math.floor(rate / scale) * scale


def _kafka_pid() -> int:
    return int((KAFKA_DATA / "kafka.pid").read_text().strip())


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM: unwind like Ctrl-C, so every `finally` stops what it started


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    results_path = OUT / "results.json"
    results_path.unlink(missing_ok=True)  # never leave an earlier run's numbers looking current
    shutil.rmtree(OUT / "logs", ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _interrupt)
    started_at, started = datetime.now(UTC), time.monotonic()
    try:
        report = bench(args)
    except BenchFailed as exc:
        print(f"BENCH FAILED: {exc}\n(service and relay logs in {OUT / 'logs'})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: everything started was stopped", file=sys.stderr)
        return 130
    wall = time.monotonic() - started
    runs = report["runs"]
    print("\n" + table(runs["signoff_throughput"], runs["relay_throughput"], runs["signoff_latency"],
                       runs["relay_latency"]))
    hop_runs = report["hops"]
    print("\nwhere the latency goes, per hop (open-loop latency runs; broker timestamps, 1 ms resolution):\n"
          + hop_table(hop_runs["signoff"], hop_runs["relay"]))
    if "skipped" not in (w := report["deployer_writes"]):
        print(f"\ndeployer durable writes alone, per deployment (median): 3 state saves "
              f"{w['state_saves_ms']['median']:.2f} ms + install and pointers {w['install_ms']['median']:.2f} ms "
              f"= {w['total_median_ms']:.2f} ms")
    for text in report["profile"].values():
        print("\n" + text)
    others = [r.other_load_cores for r in runs.values() if r.other_load_cores is not None]
    if others and max(others) > 0.25:
        print(f"WARNING: other processes kept up to {max(others):.2f} of {os.cpu_count()} cores busy "
              "during the runs: the machine was shared, the numbers are pessimistic")
    print(f"throughput runs {args.count} submissions each, wall time {wall:.0f} s "
          "(broker, services and relays included)")
    results = {
        "started_at": started_at.isoformat(), "wall_seconds": round(wall, 1),
        "config": {k: v for k, v in vars(args).items() if k != "grace"},  # its fields are there already
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        **report, "runs": {k: r.as_dict() for k, r in runs.items()},
        "ratios_signoff_over_relay": ratios(runs),
        "hops": {"runs": "latency", **{k: [h.as_dict() for h in v] for k, v in hop_runs.items()},
                 "ratios_signoff_over_relay": hop_ratios(hop_runs["signoff"], hop_runs["relay"])},
    }
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {results_path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
