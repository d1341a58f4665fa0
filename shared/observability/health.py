"""Is the service alive, and ready? And how far behind are its consumers?

Ready means: the broker answers a metadata request (a client of its own, as the service's
principal, asked at most every `cache_seconds` with a `timeout`), every subscriber's consumers have
joined their group and been given their partitions, and the service's own checks pass (its state
store is open). Alive means the event loop runs: the HTTP handler answering is the proof.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaClient, AIOKafkaConsumer
from faststream.kafka import KafkaBroker

from shared.kafka import KafkaAccess


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: dict[str, str]  # name: "ok" or what is wrong

    def body(self) -> dict[str, Any]:
        return {"status": "ready" if self.ready else "not ready", "checks": self.checks}


class BrokerProbe:
    """A metadata request through a client of its own, answered from a cache for `cache_seconds`."""

    def __init__(self, kafka: KafkaAccess, timeout: float = 2.0, cache_seconds: float = 5.0) -> None:
        self.kafka, self.timeout, self.cache_seconds = kafka, timeout, cache_seconds
        self._client: AIOKafkaClient | None = None
        self._last: tuple[float, str] | None = None
        self._lock = asyncio.Lock()

    async def check(self) -> str:
        async with self._lock:  # one request at a time, however many probes arrive
            if self._last is not None and time.monotonic() - self._last[0] < self.cache_seconds:
                return self._last[1]
            result = await self._ask()
            self._last = (time.monotonic(), result)
            return result

    async def _ask(self) -> str:
        try:
            if self._client is None:
                client = AIOKafkaClient(**self.kafka.client_kwargs(), request_timeout_ms=int(self.timeout * 1000),
                                        client_id="signoff-readiness")
                try:
                    await asyncio.wait_for(client.bootstrap(), self.timeout)
                except BaseException:
                    await client.close()
                    raise
                self._client = client
            await asyncio.wait_for(self._client.fetch_all_metadata(), self.timeout)
            return "ok"
        except TimeoutError:
            return f"broker {self.kafka.bootstrap_servers} did not answer within {self.timeout}s"
        except Exception as exc:  # noqa: BLE001 - any failure means not reachable; said, not raised
            return f"broker {self.kafka.bootstrap_servers} unreachable: {type(exc).__name__}: {exc}"[:500]

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def consumers(broker: KafkaBroker) -> Iterator[tuple[str | None, str, AIOKafkaConsumer | None]]:
    """(group, subscriber's topics, consumer) for each consumer of each subscriber; consumer None
    while the subscriber has not started (or runs in memory)."""
    for sub in broker.subscribers:
        group = getattr(sub, "group_id", None)
        names = ",".join(getattr(t, "topic", None) or str(t) for t in getattr(sub, "topics", ()) or ()) or "?"
        found = list(getattr(sub, "consumer_subgroup", None) or ()) or [getattr(sub, "consumer", None)]
        for consumer in found:
            yield group, names, consumer


def _joined(consumer: AIOKafkaConsumer) -> bool:
    """The consumer has been given its partitions (possibly none, when others of its group hold them)."""
    subscription = getattr(getattr(consumer, "_subscription", None), "subscription", None)
    if subscription is not None:
        return getattr(subscription, "assignment", None) is not None
    return bool(consumer.assignment())


def unassigned(broker: KafkaBroker) -> list[str]:
    """The subscriptions whose consumers are not (yet) assigned."""
    return sorted({f"{group or 'follower'}:{names}" for group, names, consumer in consumers(broker)
                   if consumer is None or not _joined(consumer)})


async def lags(broker: KafkaBroker) -> list[tuple[str, str, int, int]]:
    """(group, topic, partition, lag) of each assigned partition of each consumer group: the
    partition's high watermark (from the last fetch, no request) less the consumer's position."""
    out = []
    for group, _, consumer in consumers(broker):
        if group is None or consumer is None:
            continue  # followers read whole topics and commit nothing: no lag to speak of
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            if end is None:
                continue  # nothing fetched yet
            try:
                position = await asyncio.wait_for(consumer.position(tp), 1.0)
            except Exception:  # noqa: BLE001 - a partition being reassigned: skipped this scrape
                continue
            out.append((group, tp.topic, tp.partition, max(0, end - position)))
    return out


@dataclass
class Health:
    """What /readyz asks. `checks` are the service's own: name -> None when fine, else the problem."""

    broker: KafkaBroker
    probe: BrokerProbe
    checks: dict[str, Callable[[], str | None]] = field(default_factory=dict)

    async def readiness(self) -> Readiness:
        out = {"broker": await self.probe.check()}
        waiting = unassigned(self.broker)
        out["subscriptions"] = "ok" if not waiting else f"not assigned yet: {', '.join(waiting)}"[:500]
        for name, check in self.checks.items():
            out[name] = check() or "ok"
        return Readiness(all(v == "ok" for v in out.values()), out)
