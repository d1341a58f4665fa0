"""Reading the policy documents of a workflow folder: a workflow file's text, and groups.yaml's
text with the groups it names. Both from one read each (the digest is of exactly what was parsed),
bounded (decisions carry the texts: shared.values.MAX_POLICY_BYTES) and UTF-8 (the policy digest is
of the UTF-8 bytes, so it equals what anyone recomputes from the carried texts)."""

from __future__ import annotations

from pathlib import Path

import yaml

from shared.values import MAX_POLICY_BYTES
from shared.workflow.schema import WorkflowError


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
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WorkflowError([f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                             "save it as UTF-8"]) from None


def read_groups(path: Path) -> tuple[str, dict[str, tuple[str, ...]]]:
    """groups.yaml's text and its groups, from one read ("" and none when there is no such file)."""
    if not path.exists():
        return "", {}
    text = read_text(path)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise WorkflowError([f"{path}: {exc}"]) from None
    if not isinstance(data, dict) or not all(
            isinstance(v, list) and v and all(isinstance(m, str) and m for m in v) for v in data.values()):
        raise WorkflowError([f"{path}: expected group names mapped to lists of members, "
                             "such as risk: ['dave', 'erin']"])
    return text, {str(k): tuple(v) for k, v in data.items()}
