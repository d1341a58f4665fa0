"""Where a service's CPU goes during a run: py-spy attached to the running processes.

py-spy samples from outside (ptrace), so the services run exactly as measured; it is a
developer's tool and not a dependency (`pip install --target DIR py-spy`, then
`python -m bench.run --py-spy DIR/bin/py-spy`). The samples are py-spy's collapsed stacks
("frame;frame;frame count"); `top` turns them into the functions with the most samples, both
own (the frame at the top of the stack) and total (anywhere on it).
"""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

RATE_HZ = 250  # samples a second: enough for 300 submissions, cheap enough not to skew the run


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    """py-spy's raw output: one stack a line, outermost frame first, the sample count last."""
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def top(stacks: list[tuple[list[str], int]], n: int = 15) -> tuple[int, list[tuple[str, int, int]]]:
    """(total samples, [(function, own samples, total samples)]) by own samples, most first.
    A recursive function counts once per stack in its total."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for frames, count in stacks:
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    return samples, [(f, c, total[f]) for f, c in own.most_common(n)]


def render(name: str, stacks: list[tuple[list[str], int]], n: int = 15) -> str:
    samples, rows = top(stacks, n)
    lines = [f"{name}: {samples} samples at {RATE_HZ}/s (own% = on top of the stack, total% = anywhere in it)"]
    for frame, own_count, total_count in rows:
        lines.append(f"  {100 * own_count / max(samples, 1):5.1f}% {100 * total_count / max(samples, 1):5.1f}%  "
                     f"{frame}")
    return "\n".join(lines)


@contextmanager
def sampling(py_spy: str, pids: dict[str, int], folder: Path) -> Iterator[dict[str, Path]]:
    """py-spy recording each of `pids` while the block runs; yields where each one's samples go
    (written when the block ends)."""
    folder.mkdir(parents=True, exist_ok=True)
    outputs = {name: folder / f"{name}.collapsed" for name in pids}
    with ExitStack() as logs:
        procs = {name: subprocess.Popen(
            [py_spy, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--format", "raw", "--nonblocking",
             "--output", str(outputs[name])],
            stdout=subprocess.DEVNULL, stderr=logs.enter_context(open(folder / f"{name}.py-spy.log", "wb")))
            for name, pid in pids.items()}
        try:
            yield outputs
        finally:
            for proc in procs.values():
                proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            for proc in procs.values():
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
