"""The plan of a chaos run, built from a seed: pure, so the baseline and the run under faults submit
exactly the same models, bytes and votes at the same times.

Kinds of submission, and how each must end:

    auto           accuracy above 0.90: approved by the policy           deployed (or superseded)
    approve        0.81-0.90: a reviewer approves                         deployed (or superseded)
    reject         0.81-0.90: a reviewer rejects                          rejected
    checks_failed  below 0.80                                             rejected
    copy           the bytes of an earlier submission a reviewer          rejected (citing the first)
                   rejected, under another model name or version,
                   at 0.91-0.99

"Or superseded": an approval of a submission older than the one in production ends `superseded`
rather than moving production backwards (`figures` checks which of the two was right). The
targeted parts, always there: the probe (a reviewer rejects while the policy and the deployer are
down; copies of its bytes under other names wait for them) and out-of-order approvals (the older
version of a model is approved only after the newer one was deployed: superseded, nothing else).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Kind = Literal["auto", "approve", "reject", "checks_failed", "copy"]
DEPLOYABLE: tuple[Kind, ...] = ("auto", "approve")
HUMAN: tuple[Kind, ...] = ("approve", "reject")
WEIGHTS: dict[Kind, float] = {"auto": 0.30, "approve": 0.25, "reject": 0.15, "checks_failed": 0.15, "copy": 0.15}
ACCURACY: dict[Kind, tuple[float, float]] = {
    "auto": (0.91, 0.99), "approve": (0.81, 0.90), "reject": (0.81, 0.90),
    "checks_failed": (0.50, 0.79), "copy": (0.91, 0.99)}


@dataclass(frozen=True)
class Planned:
    n: int                        # its place in the plan
    kind: Kind
    model: str
    version: str
    accuracy: float
    at: float                     # seconds after the start of the run when it is submitted
    reviewer: str | None = None   # who votes (human kinds)
    vote_delay: float = 0.0       # seconds between its review opening and the vote
    copy_of: int | None = None    # copy: whose bytes, submitted once that one was rejected
    vote_after: int | None = None  # vote only once this newer submission was deployed
    probe: bool = False           # the rejection made while the policy and the deployer are down

    @property
    def expected(self) -> frozenset[str]:
        if self.vote_after is not None:
            return frozenset({"superseded"})
        return frozenset({"deployed", "superseded"} if self.kind in DEPLOYABLE else {"rejected"})


@dataclass(frozen=True)
class Scenario:
    seed: int
    submissions: tuple[Planned, ...]
    broker_kill_after: int  # the broker is killed once the submission with this n was published

    @property
    def probe(self) -> Planned:
        return next(p for p in self.submissions if p.probe)

    @property
    def probe_copies(self) -> tuple[Planned, ...]:
        return tuple(p for p in self.submissions if p.copy_of == self.probe.n)


def content(seed: int, n: int) -> bytes:
    """The artifact bytes of submission `n` (a copy reuses its source's). A fixed first line: never
    taken for a pickle by the security scan."""
    return b"weights\n" + random.Random(f"{seed}:{n}").randbytes(2048)


def build(seed: int, submissions: int, models: int = 4, *, probe_copies: int = 4, out_of_order: int = 2,
          mean_gap: float = 0.5) -> Scenario:
    """`submissions` in all (at least the targeted ones), over `models` model names plus the copies'."""
    rng = random.Random(seed)
    plan: list[Planned] = []
    versions: dict[str, int] = {}
    clock = 0.0

    def add(kind: Kind, model: str, **extra: object) -> Planned:
        nonlocal clock
        clock += rng.uniform(0, 2 * mean_gap)
        versions[model] = versions.get(model, 0) + 1
        low, high = ACCURACY[kind]
        planned = Planned(n=len(plan), kind=kind, model=model, version=f"{versions[model]}.0.0",
                          accuracy=round(rng.uniform(low, high), 3), at=round(clock, 3),
                          reviewer=rng.choice(("alice", "bob")) if kind in HUMAN else None,
                          vote_delay=round(rng.uniform(0, 3 * mean_gap), 3), **extra)
        plan.append(planned)
        return planned

    probe = add("reject", "probe", probe=True)
    for i in range(probe_copies):
        add("copy", f"probe-copy{i}", copy_of=probe.n)
    for i in range(out_of_order):  # the older version waits for the newer one's deployment
        older_n = len(plan)
        add("approve", f"late{i}", vote_after=older_n + 1)
        add("auto" if i % 2 == 0 else "approve", f"late{i}")
    pool = [f"m{i}" for i in range(models)]
    while len(plan) < submissions:
        kind = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
        # Copies of what a person rejected: failed declared metrics do not ban the bytes (a copy of
        # those, with good metrics, is a new submission like any other).
        rejected = [p.n for p in plan if p.kind == "reject"]
        if kind == "copy" and rejected:
            source = rng.choice(rejected)
            model = rng.choice(pool) if rng.random() < 0.5 else f"copy{len(plan)}"
            add("copy", model, copy_of=source)
        else:
            add("auto" if kind == "copy" else kind, rng.choice(pool))
    first_random = 1 + probe_copies + 2 * out_of_order
    kill_after = rng.randint(min(first_random, len(plan) - 1), len(plan) - 1)
    return Scenario(seed=seed, submissions=tuple(plan), broker_kill_after=kill_after)
