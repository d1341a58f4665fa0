"""The model-store target: `<root>/<model>/<version>/`, the layout TensorFlow Serving and Triton watch.

A version is written into a staging folder, fsynced, and renamed into place in one step, so a
reader never sees a half-copied model and a crash leaves at most a staging folder, which is
removed at the next start.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from shared.artifacts import ArtifactError, copy_verified
from shared.events import Candidate

STAGING = ".staging"
MANIFEST = "manifest.json"


def version_dir(root: Path, candidate: Candidate) -> Path:
    """The version folder; model and version are single safe segments (enforced by the contract,
    and checked again here)."""
    dest = (root / candidate.model / candidate.version).resolve()
    if dest.parent.parent != root.resolve():
        raise ArtifactError(f"model {candidate.model!r} version {candidate.version!r} escapes the store root")
    return dest


def install(root: Path, candidate: Candidate, source: Path, manifest: dict) -> Path:
    """Install the artifact as `<root>/<model>/<version>/`; idempotent for the same digest."""
    dest = version_dir(root, candidate)
    if dest.exists():
        existing = json.loads((dest / MANIFEST).read_text())
        if existing.get("artifact_sha256") == candidate.artifact_sha256:
            return dest  # already installed by an earlier delivery of the same approval
        raise ArtifactError(
            f"{candidate.model} version {candidate.version} is already deployed with artifact "
            f"{existing.get('artifact_sha256')}; versions are immutable, submit a new version"
        )
    staging = root / STAGING / f"{candidate.model}-{candidate.version}-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        copy_verified(source, staging / source.name, candidate.artifact_sha256)
        _write_synced(staging / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, dest)  # atomic: the version appears complete or not at all
        _fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def clean_staging(root: Path) -> None:
    """Remove what a crash mid-copy left behind."""
    shutil.rmtree(root / STAGING, ignore_errors=True)


def _write_synced(path: Path, text: str) -> None:
    with open(path, "x") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
