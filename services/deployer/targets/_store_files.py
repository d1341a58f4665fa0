"""The model store's files: `<root>/<model>/<version>/`, the layout TensorFlow Serving and Triton watch.
Synchronous filesystem functions; the target (`model_store.py`) runs them off the event loop.

A version is written into a staging folder, fsynced, and renamed into place in one step, so a
reader never sees a half-copied model and a crash leaves at most a staging folder, which is
removed at the next start.

Beside the versions, per model: `PRODUCTION` (one line: the version in production) and
`traffic.json` (the split between versions while a canary bakes), each replaced atomically
(temporary file, fsync, rename, fsync of the folder). A revoked version is moved out of the
serving tree into `<root>/.revoked/<model>/`, so no serving policy can pick it up again, with a
`REVOKED` file in it first (who and why: plain JSON, unsigned, since a mark that can only deny needs
no proof; `signoff verify` refuses a version holding one, or kept under `.revoked/`).

A version folder holds the artifact, `manifest.json` and, when the deployer attested the release,
`attestation.intoto.json` (shared.attestation); an artifact never takes one of those names. A
folder artifact (an MLflow model, a SavedModel) is the folder `<root>/<model>/<version>/<name>/`
with its files beneath, copied and verified against its tree digest (shared.sources.tree).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
import uuid
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from shared.attestation import ATTESTATION_FILE, MANIFEST_FILE, REVOKED_FILE
from shared.events import Candidate
from shared.sources import ArtifactError
from shared.sources.local import copy_tree_verified, copy_verified
from shared.values import RESERVED_VERSIONS

STAGING = ".staging"
# Whose a staging folder is: replicas of the deployer may share one model store (a volume), so a
# replica starting up removes only what is certainly abandoned (clean_staging).
OWNER = f"{socket.gethostname()}~{os.getpid()}"
STALE_AFTER_S = 6 * 3600  # a leftover of another host's deployer, or older: no copy takes this long
REVOKED = ".revoked"
MANIFEST = MANIFEST_FILE
POINTER = "PRODUCTION"
TRAFFIC = "traffic.json"
RESERVED = (MANIFEST, ATTESTATION_FILE, REVOKED_FILE)  # a version folder's own files
MAX_FILES_COPIED = 100_000  # the fetch enforced the configured cap (at most this); a copy never refuses less


def version_dir(root: Path, candidate: Candidate) -> Path:
    """The version folder; model and version are single safe segments, the version none of the
    names the model folder keeps for its own files (enforced by the contract, and checked again here)."""
    dest = (root / candidate.model / candidate.version).resolve()
    if dest.parent.parent != root.resolve():
        raise ArtifactError(f"model {candidate.model!r} version {candidate.version!r} escapes the store root")
    _not_reserved(candidate.model, candidate.version)
    return dest


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
_SAFE_SUFFIX = re.compile(r"\.[A-Za-z0-9_-]{1,16}")
FALLBACK_NAME = "model"
FOLDER_SCHEMES = ("file", "s3")  # the sources whose URIs can name a folder artifact


def artifact_name(uri: str, local: Path) -> str:
    """The artifact's file name in the version folder. A `file://` artifact keeps its own name (as
    read, `local`); a downloaded one takes the last segment of its URL path, decoded, when that is
    a safe single name (letters, digits, `._+-`, not hidden, at most 128 characters), else `model`
    plus the segment's suffix when that is safe (`model.onnx`), else `model`. Either way it never
    takes the name of one of the folder's own files (RESERVED)."""
    if urlsplit(uri).scheme.lower() != "file":
        return uri_name(uri)
    return _unreserved(local.name)


def uri_name(uri: str) -> str:
    """The artifact's file name from its URI alone (what an attested release is installed as, and
    what its attestation's subject names): the last segment of the URI's path, decoded, when that
    is a safe single name, else `model` plus its safe suffix, else `model`. A folder's URI (file,
    s3) may end with '/' (`s3://bucket/models/churn/`): its name is the folder's (`churn`)."""
    parts = urlsplit(uri)
    path = parts.path.rstrip("/") if parts.scheme.lower() in FOLDER_SCHEMES else parts.path
    name = unquote(path.rpartition("/")[2])
    if not _SAFE_NAME.fullmatch(name):
        suffix = PurePosixPath(name).suffix
        name = FALLBACK_NAME + (suffix if _SAFE_SUFFIX.fullmatch(suffix) else "")
    return _unreserved(name)


def _unreserved(name: str) -> str:
    return FALLBACK_NAME + PurePosixPath(name).suffix if name in RESERVED else name


def install(root: Path, candidate: Candidate, source: Path, manifest: dict, name: str | None = None,
            attestation: bytes | None = None) -> Path:
    """Install the artifact as `<root>/<model>/<version>/<name>` (`name`: the source's by default)
    beside its manifest and its attestation (the file's bytes); idempotent for the same digest.
    A folder `source` is installed as the folder `<name>/`, every file copied and the copy's
    tree digest checked against the approved one."""
    name = name or source.name
    if Path(name).name != name or name in ("", ".", "..", *RESERVED):
        raise ArtifactError(f"artifact file name {name!r} is not a single safe file name")
    dest = version_dir(root, candidate)
    if dest.exists():
        existing = json.loads((dest / MANIFEST).read_text())
        if existing.get("artifact_sha256") == candidate.artifact_sha256:
            return dest  # already installed by an earlier delivery of the same approval
        raise ArtifactError(
            f"{candidate.model} version {candidate.version} is already deployed with artifact "
            f"{existing.get('artifact_sha256')}; versions are immutable, submit a new version"
        )
    staging = root / STAGING / f"{OWNER}~{candidate.model}-{candidate.version}-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        if source.is_dir():
            copy_tree_verified(source, staging / name, candidate.artifact_sha256, MAX_FILES_COPIED)
        else:
            copy_verified(source, staging / name, candidate.artifact_sha256)
        _write_synced(staging / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
        if attestation is not None:
            _write_synced(staging / ATTESTATION_FILE, attestation)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, dest)  # atomic: the version appears complete or not at all
        _fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def _not_reserved(model: str, version: str) -> None:
    if version.casefold() in RESERVED_VERSIONS or version.startswith("."):
        raise ArtifactError(f"model {model!r} version {version!r} is a name the model store keeps for its own "
                            "files; choose another version")


def model_dir(root: Path, model: str) -> Path:
    dest = (root / model).resolve()
    if dest.parent != root.resolve() or model.startswith("."):
        raise ArtifactError(f"model {model!r} escapes the store root")
    return dest


def production(root: Path, model: str) -> str | None:
    """The version `PRODUCTION` names, or None."""
    try:
        return (model_dir(root, model) / POINTER).read_text().strip() or None
    except FileNotFoundError:
        return None


def set_production(root: Path, model: str, version: str | None) -> None:
    """Point `PRODUCTION` at `version` (which must be installed), or remove it (None)."""
    folder = model_dir(root, model)
    _point(folder, model, version)
    if folder.exists():
        _fsync_dir(folder)


def set_traffic(root: Path, model: str, split: dict[str, int], stage: str) -> None:
    """Record the traffic split (version -> percent) for the serving layer, or remove it (empty)."""
    folder = model_dir(root, model)
    if _split(folder, split, stage):
        _fsync_dir(folder)


def set_serving(root: Path, model: str, version: str | None, split: dict[str, int], stage: str) -> None:
    """`set_production` then `set_traffic` as one step: each file's bytes synced before its rename,
    and the model's folder once for both renames (one fsync fewer per deployment). A crash before
    that sync may keep either rename or neither; the deployer repeats the whole step then, since
    it records nothing and emits nothing before this returns. For promotions only: taking a
    version out (a restore) moves PRODUCTION durably first."""
    folder = model_dir(root, model)
    _point(folder, model, version)
    _split(folder, split, stage)
    if folder.exists():
        _fsync_dir(folder)


def _point(folder: Path, model: str, version: str | None) -> None:
    if version is None:
        (folder / POINTER).unlink(missing_ok=True)
        return
    if (folder / version).resolve().parent != folder or not (folder / version / MANIFEST).is_file():
        raise ArtifactError(f"{model} {version} is not installed in the model store")
    _not_reserved(model, version)  # a version folder of that name (made before it was refused) is not one
    _replace(folder / POINTER, version + "\n", sync_folder=False)


def _split(folder: Path, split: dict[str, int], stage: str) -> bool:
    """Whether the folder changed in a way worth its fsync (a removed split is not: as before)."""
    if not split:
        (folder / TRAFFIC).unlink(missing_ok=True)
        return False
    folder.mkdir(parents=True, exist_ok=True)
    _replace(folder / TRAFFIC, json.dumps({"stage": stage, "split": split}, indent=2, sort_keys=True),
             sync_folder=False)
    return True


def retire(root: Path, model: str, version: str, why: dict | None = None) -> Path | None:
    """Move a revoked version out of the serving tree (kept as evidence under .revoked/), marked
    REVOKED first (`why`: who and why), so a copy taken meanwhile is refused too."""
    source = model_dir(root, model) / version
    if source.resolve().parent != model_dir(root, model):
        raise ArtifactError(f"model {model!r} version {version!r} escapes the store root")
    _not_reserved(model, version)
    if not source.exists():
        return None  # never installed here, or already retired by an earlier delivery
    if not (source / REVOKED_FILE).exists():  # an earlier delivery may have marked it already
        _write_synced(source / REVOKED_FILE, json.dumps({"model": model, "version": version, **(why or {})},
                                                        indent=2, sort_keys=True) + "\n")
    dest = root / REVOKED / model / f"{version}-{uuid.uuid4().hex[:8]}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.rename(source, dest)
    _fsync_dir(source.parent)
    return dest


def clean_staging(root: Path, now: float | None = None) -> None:
    """Remove what a crash mid-copy (or mid pointer update) left behind, and nothing another
    replica sharing this store is writing now: a staging folder of a process of this host that
    is gone, or of anyone's older than STALE_AFTER_S (folders named before owners were recorded
    are a single deployer's: removed); half-written pointer files older than a minute."""
    now = time.time() if now is None else now
    staging = root / STAGING
    for entry in staging.iterdir() if staging.is_dir() else ():
        host, pid, rest = (entry.name.split("~", 2) + ["", ""])[:3]
        mine_and_dead = host == socket.gethostname() and pid.isdigit() and not _alive(int(pid))
        if not rest or mine_and_dead or now - _mtime(entry) > STALE_AFTER_S:
            shutil.rmtree(entry, ignore_errors=True)
    for leftover in root.glob("*/.*.tmp-*"):
        if now - _mtime(leftover) > 60:
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")  # gone already: nothing to remove


def _replace(path: Path, text: str, sync_folder: bool = True) -> None:
    """Replace `path` atomically: a reader sees the old content or the new, never a mix. Durable
    once its folder is synced (here, unless the caller syncs it once for several files)."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        _write_synced(tmp, text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_folder:
        _fsync_dir(path.parent)


def _write_synced(path: Path, text: str | bytes) -> None:
    with open(path, "xb") as f:
        f.write(text.encode() if isinstance(text, str) else text)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
