"""`python -m bench.hashing`: the validator's artifact digest, and what a large artifact costs others.

1. Digest of a 1 GiB artifact: `shared.sources.ArtifactSource.fetch` (what the validator runs: streamed,
   hashed in a worker thread, size-capped) beside `sha256sum` on the same file, alternating,
   in the same run. Reported as a throughput ratio (goal: at least 0.9).
2. Latency of small submissions (submitted -> checks.*) through a real validator process, first
   alone, then while a 1 GiB artifact on another partition is being hashed. Reported as the
   ratio of the two medians: one consumer per partition keeps the small ones flowing.

Its own broker (ports 9392/9393, data in .data/kafka-bench-hashing) and files under .data/bench;
everything is stopped and deleted at the end. Fails (non-zero) rather than print a partial figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from bench.infra import ROOT, kafka_broker, service_env
from shared import codec, topics
from shared.acl import Table
from shared.admin import apply_acls, ensure_topics, partitions_of
from shared.events import Candidate, ModelSubmitted, Submission
from shared.kafka import KafkaAccess
from shared.sources import ArtifactSource
from shared.sources.local import sha256_file
from signoff.devstack import Stack, free_port

GiB = 2**30
PARTITIONS = 3
WORK = ROOT / ".data" / "bench" / "hashing"


def make_file(path: Path, size: int) -> Path:
    block = b"weights\n" + os.urandom(2**20 - 8)
    with open(path, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
    return path


def local_source(root: Path) -> ArtifactSource:
    """The validator's source, reading `file://` artifacts up to 2 GiB under `root`."""
    return ArtifactSource(roots=(root,), max_bytes=2 * GiB, timeout=600, workdir=root)


async def digest_ratio(path: Path, rounds: int) -> dict:
    ours, theirs = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
        theirs.append(time.perf_counter() - start)
        start = time.perf_counter()
        fetched = await local_source(path.parent).fetch(path.as_uri())
        ours.append(time.perf_counter() - start)
        if fetched.sha256 != out.stdout.split()[0]:
            raise SystemExit("digest differs from sha256sum: not a benchmark, a bug")
    size = path.stat().st_size
    best_ours, best_theirs = min(ours), min(theirs)
    return {"size_bytes": size, "rounds": rounds,
            "signoff_s": [round(t, 3) for t in ours], "sha256sum_s": [round(t, 3) for t in theirs],
            "signoff_MiB_s": round(size / best_ours / 2**20, 1),
            "sha256sum_MiB_s": round(size / best_theirs / 2**20, 1),
            "ratio": round(best_theirs / best_ours, 3)}


def models_on_other_partitions(large: str, count: int) -> list[str]:
    """Model names (record keys) that Kafka's default partitioner puts away from `large`."""
    partitioner = DefaultPartitioner()
    parts = list(range(PARTITIONS))
    taken = partitioner(large.encode(), parts, parts)
    names = (f"small-{i}" for i in range(10_000))
    return [n for n in names if partitioner(n.encode(), parts, parts) != taken][:count]


def submission(model: str, path: Path, sha256: str) -> ModelSubmitted:
    return ModelSubmitted(submission_id=uuid.uuid4(), submission=Submission(
        candidate=Candidate(model=model, version=uuid.uuid4().hex[:8], artifact_uri=path.as_uri(),
                            artifact_sha256=sha256, data_version="d1", code_commit="abcdef1"),
        metrics={"accuracy": 0.95}, submitter="bench"))


async def small_latencies(kafka: KafkaAccess, small: Path, small_sha: str, models: list[str],
                          count: int, during: ModelSubmitted | None) -> tuple[list[float], float | None]:
    """Latency of `count` small submissions, one every 50 ms; with `during`, sent first."""
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all", enable_idempotence=True)
    await consumer.start()
    await producer.start()
    outputs = [TopicPartition(t, p) for t in (topics.CHECKS_PASSED, topics.CHECKS_FAILED)
               for p in await partitions_of(consumer, t)]
    consumer.assign(outputs)
    await consumer.seek_to_end(*outputs)
    for tp in outputs:  # resolve the end offsets now, before anything is sent
        await consumer.position(tp)
    sent: dict[str, float] = {}
    done: dict[str, float] = {}

    async def send(event: ModelSubmitted) -> None:
        record = codec.encode(event, "/bench")
        sent[str(event.submission_id)] = time.monotonic()
        await producer.send_and_wait(record.topic, record.value, key=record.key,
                                     headers=[(k, v.encode()) for k, v in record.headers.items()])

    smalls = [submission(models[i % len(models)], small, small_sha) for i in range(count)]
    expected = {str(e.submission_id) for e in smalls + ([during] if during else [])}

    async def receive(deadline: float) -> None:
        while time.monotonic() < deadline and not expected <= set(done):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for r in records:
                    sid = dict(r.headers).get("ce_subject", b"").decode()
                    if sid in expected and sid not in done:
                        done[sid] = time.monotonic()

    try:
        receiver = asyncio.create_task(receive(time.monotonic() + 600))
        if during is not None:
            await send(during)
        for event in smalls:
            await send(event)
            await asyncio.sleep(0.05)  # an open-loop rate of 20/s, not a wait for anything
        await receiver
    finally:
        await producer.stop()
        await consumer.stop()
    missing = expected - set(done)
    if missing:
        raise SystemExit(f"{len(missing)} submissions never got their checks: no figures")
    ids = [str(e.submission_id) for e in smalls]
    large_s = done[str(during.submission_id)] - sent[str(during.submission_id)] if during else None
    return [1000 * (done[i] - sent[i]) for i in ids], large_s


async def main(args: argparse.Namespace) -> dict:
    shutil.rmtree(WORK, ignore_errors=True)
    roots = WORK / "artifacts"
    roots.mkdir(parents=True)
    large = make_file(roots / "large.onnx", args.size_mib * 2**20)
    print(f"digest of {large.stat().st_size / GiB:.2f} GiB, {args.rounds} rounds each ...", flush=True)
    result = {"digest": await digest_ratio(large, args.rounds)}
    large_sha = (await local_source(roots).fetch(large.as_uri())).sha256
    small = make_file(roots / "small.onnx", 2**20)
    small_sha = sha256_file(small)

    with kafka_broker(9392, 9393, ROOT / ".data" / "kafka-bench-hashing") as cluster:
        await ensure_topics(cluster.admin, PARTITIONS)
        await apply_acls(cluster.admin, Table())
        driver = cluster.admin  # it submits and reads checks.*: a pipeline may not read those alone
        env = {**service_env(cluster.servers, WORK, roots, None), "SIGNOFF_TOPIC_PARTITIONS": str(PARTITIONS),
               "REVIEW_NOTIFIER_HTTP_PORT": str(free_port())}
        with Stack(WORK / "run", env, services=("validator",), service_env=cluster.services_env()) as stack:
            stack.start_all()
            models = models_on_other_partitions("large-model", 4)
            alone, _ = await small_latencies(driver, small, small_sha, models, args.count, None)
            busy, large_s = await small_latencies(driver, small, small_sha, models, args.count,
                                                  submission("large-model", large, large_sha))
    result["small_latency_ms"] = {
        "count": args.count,
        "alone_p50": round(statistics.median(alone), 1), "alone_max": round(max(alone), 1),
        "during_large_p50": round(statistics.median(busy), 1), "during_large_max": round(max(busy), 1),
        "large_checked_in_s": round(large_s, 2),
        "ratio_p50": round(statistics.median(busy) / statistics.median(alone), 2),
    }
    shutil.rmtree(WORK, ignore_errors=True)
    return result


def report(result: dict) -> None:
    d, s = result["digest"], result["small_latency_ms"]
    print(f"\ndigest of {d['size_bytes'] / GiB:.2f} GiB: signoff {d['signoff_MiB_s']} MiB/s, "
          f"sha256sum {d['sha256sum_MiB_s']} MiB/s -> ratio {d['ratio']} (goal >= 0.9); "
          f"best of {d['rounds']}: {d['signoff_s']} vs {d['sha256sum_s']} s")
    print(f"small submissions -> checks, n={s['count']}: alone p50 {s['alone_p50']} ms (max {s['alone_max']}); "
          f"while a {d['size_bytes'] / GiB:.2f} GiB artifact is hashed on another partition "
          f"p50 {s['during_large_p50']} ms (max {s['during_large_max']}) -> ratio {s['ratio_p50']}; "
          f"the large one took {s['large_checked_in_s']} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=40, help="small submissions per latency run")
    outcome = asyncio.run(main(parser.parse_args()))
    report(outcome)
    out = ROOT / ".data" / "bench" / "hashing.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(outcome, indent=2))
