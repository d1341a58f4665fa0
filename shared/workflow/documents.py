"""Reading the policy documents of a workflow folder: a workflow file's text, and groups.yaml's
text with the groups it names. Both from one read each (the digest is of exactly what was parsed),
bounded (decisions carry the texts: shared.values.MAX_POLICY_BYTES) and UTF-8 (the policy digest is
of the UTF-8 bytes, so it equals what anyone recomputes from the carried texts).

A policy text must read the same to a person as to the services: an approver, an auditor and a
code reviewer see the text, the services see what YAML parses. So a text is refused when it holds a
character YAML takes as a line break that editors and terminals do not show as one (CR, U+0085,
U+2028, U+2029: `risk: [dave]  # note<U+2028>risk: [mallory]` shows one line and parses two), any
other control character but tab and newline, a bidirectional control (it reorders what is shown,
"Trojan Source") or an invisible one (zero-width space, joiner, word joiner, BOM); and YAML is
loaded refusing a key written twice, which it would otherwise silently resolve to the last.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

import yaml

from shared.values import MAX_POLICY_BYTES
from shared.workflow.schema import WorkflowError

# C0 but tab and newline, DEL, C1 (U+0085 among them), line/paragraph separators, bidi controls,
# and the invisible characters that make two different names look the same.
_HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e"
                     "\u2066-\u2069\u200b-\u200d\u2060\ufeff]")
MAX_REPORTED = 5  # characters reported per file; the rest are counted


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that writes a key twice (the last would silently win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` is YAML's own way to override on purpose
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: the base loader reports it
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is written twice (first on line {first + 1}), and YAML would "
                    "silently keep the last: keep one", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def read_text(path: Path) -> str:
    """A policy document's text, bounded (decisions carry it) and UTF-8 (its digest is of those bytes)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise WorkflowError([f"{path}: {exc}"]) from None
    if len(raw) > MAX_POLICY_BYTES:
        raise WorkflowError([f"{path}: {len(raw)} bytes, at most {MAX_POLICY_BYTES}: decisions carry the "
                             f"file's text, so keep it under {MAX_POLICY_BYTES // 1024} KiB"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WorkflowError([f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                             "save it as UTF-8"]) from None
    if problems := hidden_characters(path, text):
        raise WorkflowError(problems)
    return text


def hidden_characters(path: Path, text: str) -> list[str]:
    """Each character that would make `text` display differently from how it parses, by line and
    column, with the fix (see the module)."""
    found = list(_HIDDEN.finditer(text))
    problems = []
    for match in found[:MAX_REPORTED]:
        char, at = match.group(), match.start()
        line = text.count("\n", 0, at) + 1
        column = at - text.rfind("\n", 0, at)
        name = unicodedata.name(char, "a control character")
        why = ("a line break to YAML that editors and terminals may not show"
               if char in "\r\x85\u2028\u2029" else "shown differently from how it is read, or not at all")
        fix = ("save the file with LF line endings" if char == "\r" else "save it as UTF-8 without a BOM"
               if char == "\ufeff" else f"remove it, or write it as the escape \"\\u{ord(char):04x}\" in a "
               "double-quoted string, where it shows")
        problems.append(f"{path}: line {line}, column {column}: U+{ord(char):04X} ({name}) is {why}: {fix}")
    if len(found) > MAX_REPORTED:
        problems.append(f"{path}: and {len(found) - MAX_REPORTED} more such characters")
    return problems


def load_yaml(path: Path, text: str) -> Any:
    """The YAML of a policy text, a key written twice refused (WorkflowError naming file and line)."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise WorkflowError([f"{path}: {exc}"]) from None


def read_groups(path: Path) -> tuple[str, dict[str, tuple[str, ...]]]:
    """groups.yaml's text and its groups, from one read ("" and none when there is no such file)."""
    if not path.exists():
        return "", {}
    text = read_text(path)
    data = load_yaml(path, text) or {}
    if not isinstance(data, dict) or not all(
            isinstance(v, list) and v and all(isinstance(m, str) and m for m in v) for v in data.values()):
        raise WorkflowError([f"{path}: expected group names mapped to lists of members, "
                             "such as risk: ['dave', 'erin']"])
    return text, {str(k): tuple(v) for k, v in data.items()}
