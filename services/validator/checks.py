"""The automated checks, as pure functions: each returns a CheckResult with the measured figure."""

from __future__ import annotations

import re
from collections.abc import Mapping

from shared.events import (
    CheckResult,
    ChecksFailed,
    ChecksPassed,
    ModelSubmitted,
    PolicyRef,
    Production,
    Submission,
)
from shared.production import Unknown

LINEAGE_FIELDS = ("data_version", "code_commit", "training_run_id")

# A name read from a submitted file that may appear in a check's message as it is: short, and
# nothing a reviewer's Slack, mail or page could take for markup, a link or a mention.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.:+/-]{0,63}")


def plain_name(text: str, otherwise: str) -> str:
    """`text` when it is a plain name (letters, digits, ` _.:+/-`, at most 64 characters), else
    `otherwise`, which says where the name is (`the group first on line 7`), not what it is.
    Messages report what is wrong with a submitted file and where, never its content: a reviewer
    reads them in Slack and email."""
    return text if is_plain(text) else otherwise


def is_plain(text: str) -> bool:
    return _PLAIN_NAME.fullmatch(text) is not None


def integrity(declared: str, measured: str | None, error: str | None = None) -> CheckResult:
    """The artifact's sha256 must equal the declared one. `error` says why it could not be read."""
    if error is not None:
        return CheckResult(name="integrity", passed=False, threshold=declared, message=error)
    passed = measured == declared
    return CheckResult(
        name="integrity",
        passed=passed,
        measured=measured,
        threshold=declared,
        message="artifact sha256 matches" if passed else
        f"artifact sha256 is {measured}, submission declares {declared}",
    )


def lineage(submission: Submission, required: tuple[str, ...]) -> CheckResult:
    values = {
        "data_version": submission.candidate.data_version,
        "code_commit": submission.candidate.code_commit,
        "training_run_id": submission.training_run_id,
    }
    missing = [f for f in required if not values.get(f)]
    return CheckResult(
        name="lineage",
        passed=not missing,
        measured=", ".join(f for f in required if values.get(f)) or None,
        threshold=", ".join(required),
        message="lineage complete" if not missing else f"missing lineage: {', '.join(missing)}",
    )


def thresholds(
    metrics: Mapping[str, float], minimums: Mapping[str, float], maximums: Mapping[str, float]
) -> list[CheckResult]:
    results = []
    for name, bound in sorted(minimums.items()):
        results.append(_bound(name, metrics.get(name), bound, at_least=True))
    for name, bound in sorted(maximums.items()):
        results.append(_bound(name, metrics.get(name), bound, at_least=False))
    return results


def _bound(name: str, value: float | None, bound: float, at_least: bool) -> CheckResult:
    check = f"metric:{name}"
    if value is None:
        return CheckResult(name=check, passed=False, threshold=bound,
                           message=f"metric {name!r} is missing from the submission")
    passed = value >= bound if at_least else value <= bound
    op = ">=" if at_least else "<="
    return CheckResult(name=check, passed=passed, measured=value, threshold=bound,
                       message=f"{name} = {value} (required {op} {bound})")


def parity_ratio(group_metrics: Mapping[str, Mapping[str, float]], minimum: float) -> CheckResult:
    """Demographic parity ratio: lowest selection rate over highest (the four-fifths rule)."""
    found = {g: m.get("selection_rate") for g, m in group_metrics.items()}
    name = "fairness:parity_ratio"
    rates = {g: r for g, r in found.items() if r is not None}
    if len(found) < 2 or len(rates) < len(found):
        return CheckResult(name=name, passed=False, threshold=minimum,
                           message="needs selection_rate for at least two groups in group_metrics")
    if any(r < 0 or r > 1 for r in rates.values()):
        return CheckResult(name=name, passed=False, threshold=minimum,
                           message=f"selection rates must be between 0 and 1, got {rates}")
    highest = max(rates.values())
    # Rounded before comparing: 0.32 / 0.40 is 0.7999999999999999 in floating point, and exactly
    # four-fifths must pass the four-fifths rule.
    ratio = round(min(rates.values()) / highest, 6) if highest > 0 else 1.0
    low, high = min(rates, key=rates.__getitem__), max(rates, key=rates.__getitem__)
    return CheckResult(name=name, passed=ratio >= minimum, measured=ratio, threshold=minimum,
                       message=f"parity ratio {ratio:.3f} ({low} {rates[low]} / {high} {rates[high]}), "
                       f"required >= {minimum}")


def regression(metrics: Mapping[str, float], production: Production | Unknown | None,
               higher_is_better: Mapping[str, float], lower_is_better: Mapping[str, float]
               ) -> list[CheckResult]:
    """The candidate against the model in production: worse by more than the tolerance fails.
    When production is unknown nothing can be compared, and "nothing in production" would pass a
    worse model: the check fails without blocking, so the policy asks a person."""
    if isinstance(production, Unknown):
        return [CheckResult(name="regression", passed=False, blocking=False,
                            message=f"{production.reason}; nothing to compare against, so a person decides")]
    if production is None:
        return [CheckResult(name="regression", passed=True,
                            message="no model in production yet: nothing to compare against")]
    version = production.candidate.version
    results = []
    for name, tolerance, sign in ([(n, t, 1) for n, t in sorted(higher_is_better.items())]
                                  + [(n, t, -1) for n, t in sorted(lower_is_better.items())]):
        check, before, now = f"regression:{name}", production.metrics.get(name), metrics.get(name)
        if now is None:
            results.append(CheckResult(name=check, passed=False, threshold=tolerance,
                                       message=f"metric {name!r} is missing, production {version} has {before}"))
            continue
        if before is None:
            results.append(CheckResult(name=check, passed=True, measured=now,
                                       message=f"production {version} has no {name} to compare with"))
            continue
        worse_by = round(sign * (before - now), 6)  # positive: worse than production
        bound = round(before - sign * tolerance, 6)
        results.append(CheckResult(
            name=check, passed=worse_by <= tolerance, measured=now, threshold=bound,
            message=f"{name} {now} vs production {version} {before}: "
            + (f"worse by {worse_by}, tolerance {tolerance}" if worse_by > 0 else "not worse"),
        ))
    return results


def document(name: str, required: bool, found: str | None, error: str | None) -> CheckResult | None:
    """A model card (or another document) the workflow may require: `found` is its sha256."""
    if error is not None:
        return CheckResult(name=name, passed=False, message=error)
    if found is None:
        return CheckResult(name=name, passed=False, message=f"the workflow requires a {name.replace('_', ' ')}; "
                           f"attach one with {name}_uri") if required else None
    return CheckResult(name=name, passed=True, measured=found, message=f"{name.replace('_', ' ')} attached")


def verdict(event: ModelSubmitted, results: list[CheckResult],
            workflow: PolicyRef | None) -> ChecksPassed | ChecksFailed:
    """checks.failed if any blocking check failed, else checks.passed; both carry every result."""
    failed = any(r.blocking and not r.passed for r in results)
    cls = ChecksFailed if failed else ChecksPassed
    return cls.caused_by(event, submission=event.submission, results=tuple(results), workflow=workflow)


def no_workflow(reason: str) -> CheckResult:
    return CheckResult(name="workflow", passed=False, message=reason)
