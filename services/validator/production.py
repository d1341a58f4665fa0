"""The model in production for each name, as the validator learns it from deployment.succeeded."""

from __future__ import annotations

from shared.events import DeploymentSucceeded, Production


class ProductionBook:
    def __init__(self) -> None:
        self._latest: dict[str, tuple[object, Production]] = {}

    def record(self, event: DeploymentSucceeded) -> None:
        """Newest deployment wins, whatever order the events are read in."""
        model = event.candidate.model
        known = self._latest.get(model)
        if known is None or event.occurred_at >= known[0]:
            self._latest[model] = (event.occurred_at, Production(
                candidate=event.candidate, metrics=event.metrics, submission_id=event.submission_id))

    def get(self, model: str) -> Production | None:
        known = self._latest.get(model)
        return known[1] if known else None

    def __len__(self) -> int:
        return len(self._latest)
