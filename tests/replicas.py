"""Replicas of every service side by side, for the cluster end-to-end test: N devstack Stacks (each
one replica of each service, with its own workdir, HTTP ports and SQLite files, the same settings
otherwise), Slack clicks sent to whichever review-notifier replica is alive, a wait until every
consumer group has committed everything (nothing left to redeliver), and a full read of what the
cluster then holds.

    Replicas(root, env, service_env, count=2)    .start(), .kill(replica, service), .stop()
    Clicks(secret, replicas, token)              .open(sid), .click(user, action, sid, both=False)
    await settle(kafka, timeout)                 every signoff-* group caught up with its topics
    await snapshot(kafka)                        every record of the event and dead-letter topics
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared import reader, topics
from shared.admin import partitions_of
from shared.kafka import KafkaAccess
from signoff.devstack import Stack, free_port
from signoff.standins import block_actions, signed_request
from tests.eventlog import WATCHED, Seen

GROUP_PREFIX = "signoff-"  # the services' default consumer_group_prefix, then "-"


class Replicas:
    """`count` replicas of each service: replica i is Stack i, in `root`/replica-i."""

    def __init__(self, root: Path, env: Mapping[str, str], service_env: Mapping[str, Mapping[str, str]],
                 count: int = 2) -> None:
        self.review_ports = [free_port() for _ in range(count)]
        self.stacks = [Stack(root / f"replica-{i}", {**self.own_env(root / f"replica-{i}"), **env,
                                                      "REVIEW_NOTIFIER_HTTP_PORT": str(port)},
                             service_env=service_env)
                       for i, port in enumerate(self.review_ports)]

    @staticmethod
    def own_env(workdir: Path) -> dict[str, str]:
        """What is a replica's own: its SQLite files (used where SIGNOFF_DATABASE_URL is not)."""
        workdir.mkdir(parents=True, exist_ok=True)
        return {"DEPLOYER_STATE_DB": str(workdir / "deployer.db"), "POLICY_STATE_DB": str(workdir / "policy.db"),
                "REVIEW_NOTIFIER_STATE_DB": str(workdir / "reviews.db")}

    async def start(self, timeout: float = 120.0) -> None:
        """Every replica of every service at once (each waits for its broker, not for the others)."""
        await asyncio.gather(*(asyncio.to_thread(stack.start, service, timeout)
                               for stack in self.stacks for service in stack.services))

    def kill(self, replica: int, service: str) -> None:
        """kill -9 replica `replica` of `service`; it stays down."""
        self.stacks[replica].kill(service)

    def alive(self, replica: int, service: str) -> bool:
        proc = self.stacks[replica].procs.get(service)
        return proc is not None and proc.poll() is None

    def review_urls(self) -> list[str]:
        """The review-notifier replicas that run now."""
        return [f"http://127.0.0.1:{port}" for i, port in enumerate(self.review_ports)
                if self.alive(i, "review_notifier")]

    def logs(self, service: str) -> list[str]:
        return [stack.log_path(service).read_text(errors="replace") if stack.log_path(service).exists() else ""
                for stack in self.stacks]

    def stop(self) -> None:
        for stack in self.stacks:
            stack.stop_all()


@dataclass
class Click:
    """One Slack request and what each replica it was sent to answered (status, or the error)."""
    user: str
    action: str
    sid: str
    answers: list[tuple[str, int | str]] = field(default_factory=list)

    @property
    def counted(self) -> int:
        return sum(1 for _, status in self.answers if status == 200)


class Clicks:
    """Slack interactivity requests, signed as Slack signs them, to the live review-notifiers in
    turn (or to all of them at once: the same request, which must count once)."""

    def __init__(self, secret: str, replicas: Replicas, token: str, users: Mapping[str, str]) -> None:
        self.secret, self.replicas, self.token = secret, replicas, token
        self.user_ids = {person: user_id for user_id, person in users.items()}
        self._turn = itertools.count()
        self.sent: list[Click] = []

    def _next_url(self) -> str:
        urls = self.replicas.review_urls()
        if not urls:
            raise AssertionError("no review-notifier replica is running")
        return urls[next(self._turn) % len(urls)]

    async def open(self, sid: str, timeout: float) -> None:
        """Wait until a review-notifier has opened the review of `sid` (any replica answers)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with httpx.AsyncClient(timeout=10.0) as http:
            while loop.time() < deadline:
                try:
                    answer = await http.get(f"{self._next_url()}/reviews/{sid}",
                                            headers={"Authorization": f"Bearer {self.token}"})
                    if answer.status_code == 200:
                        return
                except httpx.TransportError:
                    pass  # that replica was just killed: the next try asks another
                await asyncio.sleep(0.1)  # polling the review API, bounded by the deadline
        raise AssertionError(f"submission {sid}: its review was not opened by any replica within {timeout}s")

    async def click(self, person: str, action: str, sid: str, everywhere: bool = False) -> Click:
        """`person` clicks `action` on the review of `sid`. Sent to the next live replica (another
        one when that one is gone before it answers); with `everywhere`, the same signed request
        to every live replica at once."""
        body, headers = signed_request(self.secret, block_actions(self.user_ids[person], action, sid))
        done = Click(person, action, sid)
        self.sent.append(done)
        async with httpx.AsyncClient(timeout=60.0) as http:
            async def post(url: str) -> None:
                try:
                    answer = await http.post(f"{url}/slack/actions", content=body, headers=headers)
                    done.answers.append((url, answer.status_code))
                except httpx.TransportError as exc:
                    done.answers.append((url, type(exc).__name__))

            if everywhere:
                await asyncio.gather(*(post(url) for url in self.replicas.review_urls()))
            for _ in range(4):  # a replica killed under the request: the same request to another
                if any(status in (200, 409) for _, status in done.answers):
                    break
                await post(self._next_url())
        return done


async def settle(kafka: KafkaAccess, timeout: float) -> dict[str, str]:
    """Wait until every consumer group of the services has committed up to the end of its topic:
    nothing is left for a replica to (re)deliver, so every event the stream causes has been
    written. Returns each group's lag per partition when the deadline passes first (empty: settled)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        while True:
            lags = await _lags(admin, consumer)
            if not lags or loop.time() > deadline:
                return lags
            await asyncio.sleep(0.5)  # polling the groups' offsets, bounded by the deadline
    finally:
        await consumer.stop()
        await admin.close()


async def _lags(admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer) -> dict[str, str]:
    """Each services' group that has not committed up to the end of its topic: per partition,
    what it committed and where the partition ends."""
    groups = sorted(g[0] for g in await admin.list_consumer_groups() if str(g[0]).startswith(GROUP_PREFIX))
    lags = {}
    for group in groups:
        topic = group.split(".", 1)[1]  # <prefix>-<service>.<topic>; services' names have no dot
        partitions = [TopicPartition(topic, p) for p in sorted(await partitions_of(consumer, topic))]
        ends = await consumer.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        behind = {tp.partition: (committed[tp].offset if tp in committed else None, ends[tp]) for tp in partitions
                  if ends[tp] > (max(committed[tp].offset, 0) if tp in committed else 0)}
        if behind:
            lags[group] = ", ".join(f"partition {p} committed {c} of {e}" for p, (c, e) in behind.items())
    return lags


async def snapshot(kafka: KafkaAccess) -> list[Seen]:
    """Every record of the event topics and their dead-letter topics, up to their end now."""
    seen = []
    async for r in reader.read(kafka, WATCHED):
        headers = {k: v.decode(errors="replace") for k, v in r.headers}
        event = reader.decode(r) if r.topic in topics.EVENT_TOPICS else None
        seen.append(Seen(r.topic, r.key, r.value, headers, event))
    return seen


def log_lines(text: str, event: str, **fields: str) -> list[str]:
    """The lines of a service log with `event` (structlog's event name) and each of `fields`."""
    found = []
    for line in text.splitlines():
        if re.search(rf'\b{re.escape(event)}\b', line) and all(value in line for value in fields.values()):
            found.append(line)
    return found


__all__ = ["Click", "Clicks", "Replicas", "log_lines", "settle", "snapshot"]
