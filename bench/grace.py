"""How long the benchmark waits for the last deployments: derived from the drain rate it measured.

A fixed grace period fails a slow (busy, 2-core) run outright although nothing was lost, and
hides a real stall for a whole minute on a fast one. Instead the wait after the last send is
`factor x remaining / observed drain rate`, never below `floor_s`, restarted at each deployment
seen (a run that keeps draining is not losing anything), and never past `cap_s` after the last
send (so a trickle cannot hold a run for ever). Pure: the caller passes the clock's readings.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Grace:
    floor_s: float = 20.0  # the least wait: covers a consumer-group rebalance or a broker GC pause
    factor: float = 3.0  # headroom over the time the measured rate says the rest needs
    cap_s: float = 1800.0  # the most wait after the last send, however slow the drain

    def __post_init__(self) -> None:
        if not 0 < self.floor_s <= self.cap_s:
            raise ValueError(f"grace floor must be > 0 and <= the cap ({self.cap_s:g} s), got {self.floor_s:g}: "
                             "pass --grace-floor and --grace-max accordingly")
        if self.factor < 1:
            raise ValueError(f"grace factor must be >= 1 (headroom over the measured rate), got {self.factor:g}: "
                             "pass --grace-factor 1 or more")

    def wait_s(self, remaining: int, received: int, drain_seconds: float) -> float:
        """Seconds to wait for `remaining` more, when `received` arrived in `drain_seconds`
        (from the first send to the latest arrival). Nothing received yet: the floor."""
        if remaining <= 0:
            return 0.0
        if received <= 0 or drain_seconds <= 0:
            return self.floor_s
        rate = received / drain_seconds
        return min(self.cap_s, max(self.floor_s, self.factor * remaining / rate))

    def deadline(self, *, sends_done: float, first_send: float, last_arrival: float | None,
                 received: int, expected: int) -> float:
        """The monotonic time after which whatever is still missing counts as lost."""
        drained = 0.0 if last_arrival is None else last_arrival - first_send
        start = sends_done if last_arrival is None else max(sends_done, last_arrival)
        wait = self.wait_s(expected - received, received, drained)
        return min(start + wait, sends_done + self.cap_s)

    def describe(self, received: int, drain_seconds: float) -> str:
        """For the failure message: what the grace was derived from."""
        rate = f"{received / drain_seconds:.1f}/s" if received and drain_seconds > 0 else "nothing yet"
        return (f"observed drain rate {rate}; grace = max({self.floor_s:g} s, {self.factor:g} x remaining / rate), "
                f"capped at {self.cap_s:g} s after the last send")
