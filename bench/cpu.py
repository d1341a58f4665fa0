"""CPU time of the processes in a run, from /proc (Linux): where the two cores went.

On a 2-core machine the services, the relays, the broker and this process share the CPU, so
CPU milliseconds per submission explain a throughput figure better than wall time does.
"""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of `pid` so far, or None when /proc does not have it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": field 3 is fields[0]
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def machine_busy_seconds() -> float | None:
    """CPU seconds all processes on the machine spent busy so far (all cores), from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in first[1:9])
    return (user + nice + system + irq + softirq + steal) / TICKS


def snapshot(pids: dict[str, int]) -> dict[str, float]:
    return {name: s for name, pid in pids.items() if (s := cpu_seconds(pid)) is not None}


def other_load(busy_before: float | None, busy_after: float | None, before: dict[str, float],
               after: dict[str, float], seconds: float) -> float | None:
    """Cores kept busy by processes that are not part of the run (other people's work, say):
    when it is not near 0, the run shared the machine and its numbers are pessimistic."""
    if busy_before is None or busy_after is None or seconds <= 0:
        return None
    ours = sum(after[n] - before[n] for n in before if n in after)
    return round(max(0.0, busy_after - busy_before - ours) / seconds, 2)


def per_item_ms(before: dict[str, float], after: dict[str, float], count: int) -> dict[str, float]:
    """CPU milliseconds per submission of each process seen in both snapshots."""
    return {name: round((after[name] - before[name]) * 1e3 / count, 2) for name in before if name in after}
