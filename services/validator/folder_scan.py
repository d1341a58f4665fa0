"""The security scan of a folder artifact (an MLflow model, a SavedModel, a Hugging Face folder):
every regular file in it is scanned as `security.scan` scans a single artifact, since a loader may
open any of them. Nothing is loaded, imported or unpickled.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from services.validator.checks import plain_name
from services.validator.security import scan
from shared.events import CheckResult

MAX_MESSAGE = 1500  # the passing summary names each file's result, cut to what a reviewer reads


def scan_folder(root: Path, allowed_globals: Collection[str]) -> CheckResult:
    """A folder artifact: every regular file in it is scanned as `scan` scans one artifact (by
    content and suffix: pickles, zips, .npy, safetensors; other files carry no pickle), since a
    loader may open any of them (an MLflow model's model.pkl, a checkpoint's shards). Symbolic
    links were refused when the folder was read. Passes only if every file passes."""
    results = []
    for number, path in enumerate(_files(root), start=1):
        rel = path.relative_to(root).as_posix()
        results.append((plain_name(rel, f"file {number}"), scan(path, allowed_globals)))
    threshold = f"allowlist of {len(frozenset(allowed_globals))} globals"
    failed = [(rel, r) for rel, r in results if not r.passed]
    pickles = sum(1 for _, r in results if "globals" in str(r.measured))
    measured = f"folder: {len(results)} files, {pickles} with pickle content"
    if failed:
        return CheckResult(name="security", passed=False, measured=measured, threshold=threshold,
                           message="; ".join(f"{rel}: {r.message}" for rel, r in failed))
    return CheckResult(name="security", passed=True, measured=measured, threshold=threshold,
                       message=f"{len(results)} files scanned: "
                               + "; ".join(f"{rel}: {r.message}" for rel, r in results)[:MAX_MESSAGE])


def _files(root: Path) -> list[Path]:
    found = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs.sort()
        found += [Path(folder) / n for n in sorted(names) if (Path(folder) / n).is_file()
                  and not (Path(folder) / n).is_symlink()]
    return found
