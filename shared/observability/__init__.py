"""Metrics, traces and health for every Signoff process that runs a broker.

`make_broker` (shared/broker.py) calls `middlewares` and `attach`: FastStream's Prometheus and
telemetry middlewares plus `tracing.Carry`, and an `Observability` per broker, found again with
`of(broker)` by the Emitter (counts what it emits, carries the trace) and the dead letters. A service
adds its own readiness checks and scrape-time collectors, and serves `http.router(obs)`: from its own
API, or from an `http.HealthServer`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from shared.kafka import KafkaAccess
from shared.observability import tracing
from shared.observability.health import BrokerProbe, Health, lags
from shared.observability.metrics import Metrics

_OF: weakref.WeakKeyDictionary[KafkaBroker, Observability] = weakref.WeakKeyDictionary()


class Observability:
    """One app's registry and metrics, trace memory and health."""

    def __init__(self, service: str, kafka: KafkaAccess, tracing_settings: tracing.TracingSettings) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.memory = tracing.Memory()
        self.tracing = tracing_settings
        self.probe = BrokerProbe(kafka)
        self._broker: KafkaBroker | None = None
        self._health: Health | None = None

    def middlewares(self) -> tuple:
        """Outermost first: Carry fills the trace headers the telemetry middleware then reads."""
        return (tracing.carry(self.memory), tracing.telemetry(self.tracing, self.service),
                KafkaPrometheusMiddleware(registry=self.registry, app_name=f"signoff-{self.service}"))

    def attach(self, broker: KafkaBroker) -> None:
        self._broker = broker
        self._health = Health(broker, self.probe)
        _OF[broker] = self

    @property
    def health(self) -> Health:
        assert self._health is not None, "attach()ed by make_broker"
        return self._health

    def ready_when(self, name: str, check: Callable[[], str | None]) -> None:
        """A readiness check of the service's own: None when fine, else what is wrong."""
        self.health.checks[name] = check

    def collect(self, collector: Collector) -> None:
        self.registry.register(collector)

    async def refresh(self) -> None:
        """Before a scrape: what is measured then (consumer lag)."""
        if self._broker is not None:
            self.metrics.set_lag(await lags(self._broker))

    async def close(self) -> None:
        await self.probe.close()


def of(broker: KafkaBroker) -> Observability | None:
    return _OF.get(broker)


def required(broker: KafkaBroker) -> Observability:
    """The broker's Observability; a broker not made by make_broker has none."""
    obs = _OF.get(broker)
    if obs is None:
        raise RuntimeError("this broker was not made by shared.broker.make_broker: it has no observability")
    return obs
