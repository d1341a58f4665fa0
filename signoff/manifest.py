"""Building a Submission from CLI flags or a manifest file, with errors that name the field."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

import yaml
from pydantic import ValidationError

from shared.codec import describe
from shared.events import Submission
from shared.sources.local import sha256_file


class ManifestError(ValueError):
    pass


def artifact_uri(value: str) -> str:
    """A plain path becomes an absolute file:// URI; URIs pass through."""
    if urlparse(value).scheme in ("file", "http", "https"):
        return value
    return Path(value).resolve().as_uri()


def parse_pairs(pairs: list[str], what: str) -> dict[str, float]:
    """['accuracy=0.93', ...] -> {'accuracy': 0.93}"""
    out: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise ManifestError(f"{what} {pair!r}: expected name=number, e.g. accuracy=0.93") from None
    return out


def build(data: dict) -> Submission:
    """Validate `data` as a Submission; fills artifact_sha256 from a local artifact when absent."""
    candidate = data.get("candidate")
    if isinstance(candidate, dict) and "artifact_uri" in candidate:
        candidate["artifact_uri"] = artifact_uri(str(candidate["artifact_uri"]))
        if not candidate.get("artifact_sha256"):
            parsed = urlparse(candidate["artifact_uri"])
            if parsed.scheme != "file":
                raise ManifestError("candidate.artifact_sha256 is required for a remote artifact")
            try:
                candidate["artifact_sha256"] = sha256_file(Path(unquote(parsed.path)))
            except OSError as exc:
                raise ManifestError(f"candidate.artifact_uri: cannot read the artifact: {exc}") from exc
    for key in ("model_card_uri", "evaluation_uri"):
        if isinstance(data.get(key), str):
            data[key] = artifact_uri(data[key])
    try:
        return Submission.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(describe(exc)) from exc


def load(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a mapping with candidate, metrics, submitter, ...")
    return data
