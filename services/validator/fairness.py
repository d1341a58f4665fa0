"""Fairness checks beyond the parity ratio: equalized odds from the rates a submission reports, and
both figures recomputed with fairlearn from an evaluation file the submission attaches.

Every figure is rounded to 6 places before it is compared, so a figure exactly on its threshold
passes (0.3 - 0.2 is 0.09999999999999998 in floating point).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from services.validator.checks import plain_name
from shared.events import CheckResult

if TYPE_CHECKING:
    import _csv

EQUALIZED_ODDS = "fairness:equalized_odds_difference"
PARITY_EVALUATED = "fairness:parity_ratio(evaluated)"
EQUALIZED_ODDS_EVALUATED = "fairness:equalized_odds_difference(evaluated)"
EVALUATION = "fairness:evaluation"

COLUMNS = ("label", "prediction", "group")
MAX_ROWS = 5_000_000
MAX_BYTES = 1 << 30
MAX_GROUPS = 1_000
MAX_GROUP_CHARS = 512
RATES = ("tpr", "fpr")
_BIT = {"0": 0, "1": 1}
_FIX_FORMAT = "the file must be UTF-8 CSV with a header naming label, prediction and group"

# Per group, how many rows fell in each confusion cell, indexed label * 2 + prediction:
# [true negatives, false positives, false negatives, true positives].
Cells = dict[str, list[int]]


def equalized_odds(group_metrics: Mapping[str, Mapping[str, float]], max_difference: float) -> CheckResult:
    """The larger of the TPR spread and the FPR spread across groups, as fairlearn's
    `equalized_odds_difference` (between groups, worst case), from the rates the submission reports."""
    problem = _reported_problem(group_metrics)
    if problem:
        return CheckResult(name=EQUALIZED_ODDS, passed=False, threshold=max_difference,
                           message=f"{problem}; report tpr and fpr (each in [0, 1]) for at least "
                           "two groups in group_metrics")
    rates = {g: {r: float(m[r]) for r in RATES} for g, m in group_metrics.items()}
    figure, gap = _widest_gap(rates)
    return _equalized_odds_result(EQUALIZED_ODDS, figure, gap, max_difference, "")


def from_evaluation(path: Path, min_parity_ratio: float,
                    max_equalized_odds_difference: float | None) -> list[CheckResult]:
    """Parity ratio (and equalized odds, when a maximum is set) computed by fairlearn from the
    rows of an evaluation CSV; one failed `fairness:evaluation` result if the file is unusable."""
    try:
        cells = _read(path)
    except _Unusable as e:
        return [CheckResult(name=EVALUATION, passed=False, message=str(e))]
    return _evaluate(cells, min_parity_ratio, max_equalized_odds_difference)


class _Unusable(Exception):
    """The evaluation file cannot be evaluated; the message names the problem and the fix."""


def _reported_problem(group_metrics: Mapping[str, Mapping[str, float]]) -> str | None:
    if len(group_metrics) < 2:
        return f"needs at least two groups, got {len(group_metrics)} ({', '.join(group_metrics) or 'none'})"
    for group, metrics in group_metrics.items():
        for rate in RATES:
            value = metrics.get(rate)
            if value is None:
                return f"group {group!r} lacks {rate!r}"
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not math.isfinite(value) or not 0 <= value <= 1):
                return f"group {group!r} has {rate} = {value!r}, not a rate in [0, 1]"
    return None


def _widest_gap(rates: Mapping[str, Mapping[str, float]]) -> tuple[float, str]:
    """The equalized odds difference and which rate and groups give it."""
    spreads = []
    for rate in RATES:
        low = min(rates, key=lambda g: rates[g][rate])
        high = max(rates, key=lambda g: rates[g][rate])
        spreads.append((rates[high][rate] - rates[low][rate],
                        f"{rate}: {low} {rates[low][rate]:.3f} vs {high} {rates[high][rate]:.3f}"))
    spread, gap = max(spreads, key=lambda s: s[0])  # the first (tpr) on a tie
    return round(spread, 6), gap


def _equalized_odds_result(name: str, figure: float, gap: str, maximum: float, over: str) -> CheckResult:
    return CheckResult(name=name, passed=figure <= maximum, measured=figure, threshold=maximum,
                       message=f"equalized odds difference {figure:.3f}{over} ({gap}), "
                       f"required <= {maximum}")


def _read(path: Path) -> Cells:
    """Stream the file into confusion-cell counts per group: memory stays bounded by the groups."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise _Unusable(f"evaluation file is larger than {MAX_BYTES >> 20:,} MiB; evaluate on "
                            f"a sample of at most {MAX_ROWS:,} rows")
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            try:
                return _count(reader)
            except csv.Error as e:
                raise _Unusable(f"evaluation file is not valid CSV at line {reader.line_num}: {e}; "
                                f"{_FIX_FORMAT}") from None
    except UnicodeDecodeError:
        raise _Unusable(f"evaluation file is not UTF-8 text; {_FIX_FORMAT}") from None
    except OSError as e:
        raise _Unusable(f"cannot read evaluation file {path}: {e.strerror or e}; attach a "
                        "readable file") from None


def _count(reader: _csv.Reader) -> Cells:
    header = [h.strip() for h in next(reader, [])]
    if not header:
        raise _Unusable(f"evaluation file is empty; {_FIX_FORMAT}, then one row per example")
    missing = [c for c in COLUMNS if c not in header]
    if missing:  # the header is the submitter's text: say what is missing, not what is there
        raise _Unusable(f"evaluation file lacks column {', '.join(missing)} in its header (line "
                        f"{reader.line_num}, {len(header)} columns); {_FIX_FORMAT}")
    at = [header.index(c) for c in COLUMNS]
    cells: Cells = {}
    first: dict[str, int] = {}  # group -> the line it first appears on
    rows = 0
    for row in reader:
        if not row:
            continue  # a blank line
        rows += 1
        if rows > MAX_ROWS:
            raise _Unusable(f"evaluation file has more than {MAX_ROWS:,} rows; evaluate on a "
                            f"sample of at most {MAX_ROWS:,}")
        if len(row) != len(header):
            raise _Unusable(f"line {reader.line_num} has {len(row)} fields, the header has "
                            f"{len(header)}; quote values that contain commas")
        label, prediction, group = (row[i].strip() for i in at)
        y, p = _BIT.get(label), _BIT.get(prediction)
        if y is None or p is None:
            column = "label" if y is None else "prediction"
            raise _Unusable(f"{column} at line {reader.line_num} (column {at[COLUMNS.index(column)] + 1}) "
                            f"is not 0 or 1; {column} must be 0 or 1 (binary classification)")
        counts = cells.get(group)
        if counts is None:
            counts = cells[group] = _new_group(group, len(cells), reader.line_num)
            first[group] = reader.line_num
        counts[y * 2 + p] += 1
    if not rows:
        raise _Unusable("evaluation file has a header but no rows; add one row per example")
    named = {_shown_group(g, first[g]): c for g, c in cells.items()}
    if len(cells) < 2:
        raise _Unusable(f"evaluation file has one group only ({next(iter(named))!r}); fairness "
                        "needs rows from at least two values of the group column")
    return named


def _shown_group(group: str, line: int) -> str:
    """How results name a group of the file: itself when plain (see `checks.plain_name`), else
    by where it first appears; distinct groups keep distinct names (no plain name has brackets)."""
    return plain_name(group, f"(group first on line {line})")


def _new_group(group: str, known: int, line: int) -> list[int]:
    if not group:
        raise _Unusable(f"group is empty at line {line}; every row needs its sensitive group")
    if len(group) > MAX_GROUP_CHARS:
        raise _Unusable(f"group at line {line} is longer than {MAX_GROUP_CHARS} characters; "
                        "use a short group name")
    if known >= MAX_GROUPS:
        raise _Unusable(f"evaluation file has more than {MAX_GROUPS:,} groups (line {line}); "
                        "is the group column a sensitive attribute?")
    return [0, 0, 0, 0]


def _evaluate(cells: Cells, min_ratio: float, max_difference: float | None) -> list[CheckResult]:
    # Imported here: fairlearn brings pandas and scikit-learn, 1.5 s to import, needed only here.
    import numpy as np
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_ratio,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    # fairlearn works row by row in Python (minutes for millions of rows), so it gets one row per
    # distinct (group, label, prediction), weighted by how often it occurred: the same figures.
    rows = [(g, i // 2, i % 2, n) for g, counts in cells.items() for i, n in enumerate(counts) if n]
    args = dict(y_true=np.array([r[1] for r in rows]), y_pred=np.array([r[2] for r in rows]),
                sensitive_features=np.array([r[0] for r in rows], dtype=object))
    weight = np.array([r[3] for r in rows])
    per_group = MetricFrame(
        metrics={"selection_rate": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate},
        **args, sample_params={m: {"sample_weight": weight} for m in ("selection_rate", "tpr", "fpr")},
    ).by_group.to_dict("index")
    over = f" over {sum(map(sum, cells.values())):,} rows, {len(cells)} groups"

    ratio = demographic_parity_ratio(**args, sample_weight=weight)
    ratio = 1.0 if math.isnan(ratio) else round(ratio, 6)  # nobody selected in any group: parity
    sel = {g: r["selection_rate"] for g, r in per_group.items()}
    low, high = min(sel, key=sel.__getitem__), max(sel, key=sel.__getitem__)
    results = [CheckResult(
        name=PARITY_EVALUATED, passed=ratio >= min_ratio, measured=ratio, threshold=min_ratio,
        message=f"parity ratio {ratio:.3f}{over} ({low} {sel[low]:.3f} / {high} {sel[high]:.3f}), "
        f"required >= {min_ratio}")]
    if max_difference is not None:
        undefined = _undefined_rates(cells)
        if undefined:
            results.append(CheckResult(
                name=EQUALIZED_ODDS_EVALUATED, passed=False, threshold=max_difference,
                message=f"{undefined}, so equalized odds is undefined{over}; evaluate on data "
                "with both labels in every group"))
        else:
            figure = round(equalized_odds_difference(**args, sample_weight=weight), 6)
            _, gap = _widest_gap(per_group)
            results.append(_equalized_odds_result(EQUALIZED_ODDS_EVALUATED, figure, gap,
                                                  max_difference, over))
    return results


def _undefined_rates(cells: Cells) -> str | None:
    # fairlearn would report such a rate as 0 and make up a gap.
    for group, (tn, fp, fn, tp) in cells.items():
        if tp + fn == 0:
            return f"group {group!r} has no rows with label 1 (its true positive rate is 0/0)"
        if tn + fp == 0:
            return f"group {group!r} has no rows with label 0 (its false positive rate is 0/0)"
    return None
