"""Workflow conditions in CEL (cel-python): side-effect free, no code execution from a config file.

A condition is checked when its workflow loads: it must parse, name only what a submission has, and
name only metrics the checks step requires (so the metric is there whenever the condition runs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import celpy
import celpy.celparser
import celpy.evaluation
from lark import Token, Tree

from shared.workflow.matching import ConditionError

SUBMISSION_ROOTS = frozenset({
    "model", "version", "submitter", "data_version", "code_commit", "training_run_id",
    "metrics", "group_metrics", "checks",
})
CARRY_FORWARD_ROOTS = SUBMISSION_ROOTS | {"production"}
PRODUCTION_FIELDS = frozenset({"version", "data_version", "code_commit", "artifact_sha256", "metrics"})
MACROS = frozenset({"exists", "all", "exists_one", "map", "filter"})

_env = celpy.Environment()


@dataclass(frozen=True)
class Condition:
    expression: str
    program: Any

    def __call__(self, context: Mapping[str, Any]) -> bool:
        """Evaluate over `context`; raises ConditionError unless the result is a boolean."""
        try:
            result = self.program.evaluate({k: celpy.json_to_cel(v) for k, v in context.items()})
        except (celpy.evaluation.CELEvalError, TypeError, ValueError) as exc:
            raise ConditionError(f"{self.expression!r} could not be evaluated: {exc}") from exc
        if isinstance(result, celpy.evaluation.CELEvalError):
            raise ConditionError(f"{self.expression!r} could not be evaluated: {result}")
        if not isinstance(result, celpy.celtypes.BoolType):
            raise ConditionError(f"{self.expression!r} gave {result!r}, not true or false")
        return bool(result)


def compile_condition(expression: str, roots: Iterable[str], metrics: set[str]) -> Condition:
    """Parse and check `expression`; raises ConditionError naming the position and the fix."""
    try:
        tree = _env.compile(expression)
    except celpy.celparser.CELParseError as exc:
        line, column = getattr(exc, "line", None), getattr(exc, "column", None)
        raise ConditionError(f"{expression!r} does not parse at line {line}, column {column}: "
                             "check the operators and parentheses") from None
    roots = frozenset(roots)
    for name, path, token in _references(tree):
        where = f"at column {token.column}" if getattr(token, "column", None) else ""
        if name not in roots:
            raise ConditionError(f"{expression!r} names {name!r} {where}, which a submission does not have; "
                                 f"use one of: {', '.join(sorted(roots))}")
        if name == "metrics" and path and path[0] not in metrics:
            known = ", ".join(sorted(metrics)) or "none"
            raise ConditionError(f"{expression!r} names metrics.{path[0]} {where}, which the checks step does "
                                 f"not require (it requires: {known}); add it to the checks step's "
                                 "inputs.min or inputs.max, or fix the name")
        if name == "production" and path and path[0] not in PRODUCTION_FIELDS:
            raise ConditionError(f"{expression!r} names production.{path[0]} {where}; production has: "
                                 f"{', '.join(sorted(PRODUCTION_FIELDS))}")
    return Condition(expression, _env.program(tree))


def _references(tree: Tree) -> Iterable[tuple[str, list[str], Token]]:
    """Each identifier the expression reads, with the member path after it:
    `metrics.accuracy` -> ('metrics', ['accuracy']); `metrics["f1"]` -> ('metrics', ['f1']).
    Variables bound by macros (`x.exists(m, m > 1)`) are not references."""
    bound = set()
    for node in tree.iter_subtrees():
        if node.data == "member_dot_arg" and str(node.children[1]) in MACROS and len(node.children) > 2:
            first = next(node.children[2].find_data("ident"), None)
            if first is not None:
                bound.add(str(first.children[0]))
    longest: dict[int, tuple[Token, list[str]]] = {}
    for node in tree.iter_subtrees():
        if node.data == "member" and (found := _chain(node)) is not None:
            token, path = found
            if len(path) >= len(longest.get(id(token), (None, []))[1]):
                longest[id(token)] = (token, path)
    for token, path in longest.values():
        if str(token) not in bound:
            yield str(token), path, token


def _chain(member: Tree) -> tuple[Token, list[str]] | None:
    """The root identifier and member path of a `member` node, if it is a plain access chain."""
    child = member.children[0]
    if not isinstance(child, Tree):
        return None
    if child.data == "primary":
        inner = child.children[0]
        if isinstance(inner, Tree) and inner.data == "ident":
            token = inner.children[0]
            assert isinstance(token, Token), "an ident node holds one IDENT token"
            return token, []
        return None
    if child.data in ("member_dot", "member_index") and isinstance(child.children[0], Tree):
        base = _chain(child.children[0])
        if base is None:
            return None
        step = str(child.children[1]) if child.data == "member_dot" else _literal(child.children[1])
        # An index computed at run time (metrics[m]) names no field we can check: stop the path.
        return base[0], base[1] if step is None else [*base[1], step]
    return None


def _literal(node: Any) -> str | None:
    """The key of an index that is a plain string literal (`metrics["f1"]`), else None."""
    tokens = list(node.scan_values(lambda t: isinstance(t, Token))) if isinstance(node, Tree) else [node]
    if len(tokens) == 1 and str(tokens[0])[:1] in ("'", '"'):
        return str(tokens[0])[1:-1]
    return None
