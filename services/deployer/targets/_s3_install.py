"""A version in the bucket, its pointer, its traffic file, its revocation: what the s3 target does,
as blocking functions of a boto3 client (`_s3_objects` has the calls; `_s3_layout` the keys).

What is uploaded is read from a private, verified local copy (`staged`): a `file://` artifact is
copied out of its folder while hashed (as the model store copies it), so a file swapped after the
deployer's check cannot reach the bucket; a download is already the deployer's own, hashed as it
was written. A folder's files are hashed one by one and their tree digest (shared.sources.tree)
must be the approved one before anything is written; each file then goes up with its own sha256,
under `<version>/<name>/` as the model store installs a folder (and `signoff verify` reads it).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from services.deployer.targets import _s3_objects as objects
from services.deployer.targets._s3_layout import (
    ATTESTATION_FILE,
    MANIFEST_FILE,
    POINTER,
    RESERVED,
    REVOKED_FILE,
    TRAFFIC,
    Place,
    model_key,
    version_key,
)
from shared.events import Candidate
from shared.sources import ArtifactError, Fetched, tree
from shared.sources.base import CHUNK
from shared.sources.local import copy_verified, walk

STAGING = ".s3-staging"  # under the deployer's download folder


class Upload(NamedTuple):
    name: str  # the path in the version folder ('/'-separated for a folder's files)
    path: Path  # the local, verified bytes
    sha256: str
    size: int


@dataclass(frozen=True)
class Staged:
    files: tuple[Upload, ...]
    copy: Path | None  # the private copy, removed by `cleanup`

    def cleanup(self) -> None:
        if self.copy is not None:
            shutil.rmtree(self.copy, ignore_errors=True)


def staged(fetched: Fetched, expected: str, name: str, workdir: Path, max_files: int) -> Staged:
    """The artifact's files as uploads, from bytes whose digest is `expected` (see the module): a
    file as `name`, a folder's files as `name/<path>`."""
    if "/" in name or name in ("", ".", "..", *RESERVED):
        raise ArtifactError(f"artifact name {name!r} is not a single safe name beside {', '.join(RESERVED)}")
    copy = None if fetched.temporary else workdir / STAGING / uuid.uuid4().hex
    try:
        if copy is not None:
            copy.mkdir(parents=True)
        if not fetched.folder:
            if copy is None:
                return Staged((Upload(name, fetched.path, expected, fetched.size),), None)
            copy_verified(fetched.path, copy / name, expected)
            return Staged((Upload(name, copy / name, expected, (copy / name).stat().st_size),), copy)
        uploads = _folder(fetched.path, copy, max_files)
        measured = tree.digest([tree.TreeFile(u.name, u.sha256, u.size) for u in uploads], "artifact folder", max_files)
        if measured != expected:
            raise ArtifactError(f"artifact digest is {measured}, approved digest is {expected}: "
                                "the artifact changed since it was checked")
        return Staged(tuple(u._replace(name=f"{name}/{u.name}") for u in uploads), copy)
    except BaseException:
        if copy is not None:
            shutil.rmtree(copy, ignore_errors=True)
        raise


def _folder(root: Path, copy: Path | None, max_files: int) -> list[Upload]:
    uploads: list[Upload] = []

    def visit(rel: str, dir_fd: int, left: int) -> tree.TreeFile:
        fd = os.open(rel.rpartition("/")[2], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        digest, size = hashlib.sha256(), 0
        with open(fd, "rb") as src, _sink(root, copy, rel) as (out, local):
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out(chunk)
        uploads.append(Upload(rel, local, digest.hexdigest(), size))
        return tree.TreeFile(rel, digest.hexdigest(), size)

    walk(root, root.as_uri(), 2**63, max_files, visit)
    return uploads


@contextlib.contextmanager
def _sink(root: Path, copy: Path | None, rel: str) -> Any:
    """Where a folder's file is copied to while hashed, and the local file to upload (a download
    is hashed in place and uploaded from there)."""
    if copy is None:
        yield (lambda chunk: None), root / rel
        return
    target = copy / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "xb") as out:
        yield out.write, target
        out.flush()
        os.fsync(out.fileno())


def install(s3: Any, place: Place, candidate: Candidate, files: Staged, manifest: dict,
            attestation: bytes | None) -> None:
    """Upload the version: its files, its attestation, then its manifest, written only if absent;
    idempotent for the same digest, refused for another (versions are immutable)."""
    bucket, folder = place.bucket, version_key(place, candidate.model, candidate.version)
    if _already(s3, place, folder, candidate):
        return
    planned = {f"{folder}/{u.name}" for u in files.files} | {f"{folder}/{ATTESTATION_FILE}"}
    # No manifest: never a version. What an interrupted upload left is not part of this one.
    objects.delete(s3, bucket, [k for k in objects.keys_under(s3, bucket, folder + "/") if k not in planned])
    written: list[str] = []
    try:
        for upload in files.files:
            written.append(f"{folder}/{upload.name}")
            objects.put_file(s3, bucket, written[-1], upload.path, upload.sha256, upload.size)
        if attestation is not None:
            written.append(f"{folder}/{ATTESTATION_FILE}")
            objects.put_bytes(s3, bucket, written[-1], attestation)
        if not objects.put_bytes(s3, bucket, f"{folder}/{MANIFEST_FILE}", objects.dumps(manifest), only_new=True):
            _already(s3, place, folder, candidate)  # written meanwhile by another deployer: the same?
    except BaseException:
        with contextlib.suppress(Exception):  # best effort: without a manifest it is no version anyway
            objects.delete(s3, bucket, written)
        raise


def _already(s3: Any, place: Place, folder: str, candidate: Candidate) -> bool:
    existing = objects.manifest_of(s3, place, folder)
    if existing is None:
        return False
    if existing.get("artifact_sha256") == candidate.artifact_sha256:
        return True  # installed by an earlier delivery of the same approval
    raise ArtifactError(f"{place.uri(candidate.model, candidate.version)}/ is already deployed with artifact "
                        f"{existing.get('artifact_sha256')}; versions are immutable, submit a new version")


def set_pointer(s3: Any, place: Place, model: str, pointer: dict | None) -> None:
    """Write PRODUCTION (`pointer` names an installed version with its digest), or delete it (None)."""
    key = model_key(place, model, POINTER)
    if pointer is None:
        s3.delete_object(Bucket=place.bucket, Key=key)
        return
    folder = version_key(place, model, pointer["version"])
    manifest = objects.manifest_of(s3, place, folder)
    if manifest is None or manifest.get("artifact_sha256") != pointer["sha256"]:
        raise ArtifactError(f"{place.uri(model, pointer['version'])}/ is not installed with artifact "
                            f"{pointer['sha256']}; the pointer is left as it was")
    objects.put_bytes(s3, place.bucket, key, objects.dumps(pointer))


def set_traffic(s3: Any, place: Place, model: str, split: dict[str, int], stage: str) -> None:
    """Record the split (version -> percent) for the serving layer, or remove it (empty)."""
    key = model_key(place, model, TRAFFIC)
    if not split:
        s3.delete_object(Bucket=place.bucket, Key=key)
        return
    objects.put_bytes(s3, place.bucket, key, objects.dumps({"stage": stage, "split": split}))


def retire(s3: Any, place: Place, model: str, version: str, why: dict) -> bool:
    """Mark a revoked version REVOKED (kept as evidence; `signoff verify` refuses it) and remove the
    pointer if it names it. False when the version was never installed here."""
    folder = version_key(place, model, version)
    if objects.manifest_of(s3, place, folder) is None:
        return False
    # Only if absent: a repeat keeps the first mark (who and why).
    objects.put_bytes(s3, place.bucket, f"{folder}/{REVOKED_FILE}",
                      objects.dumps({"model": model, "version": version, **why}), only_new=True)
    pointer = objects.read_json(s3, place.bucket, model_key(place, model, POINTER))
    if pointer is not None and pointer.get("version") == version:
        set_pointer(s3, place, model, None)
    return True

