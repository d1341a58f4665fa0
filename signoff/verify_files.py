"""What `signoff verify` reads from disk: where PATH is, the files of a version folder (regular
files only, bounded), and the model store's revocation marks. signoff/verify.py decides.

Every file is opened without following a symbolic link and without blocking, then checked to be a
regular file before a byte is read: a FIFO where the artifact should be would otherwise hang the
serving platform's start-up, and a device would be read for ever.

The store's layout is the deployer's (services/deployer/targets/_store_files): versions at
`<root>/<model>/<version>/`, a retired version moved to `<root>/.revoked/<model>/<version>-<id>/`
with a `REVOKED` file (who and why, unsigned: a mark that can only deny needs no proof).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from shared import attestation
from shared.attestation import ATTESTATION_FILE, MANIFEST_FILE, REVOKED_FILE, AttestationError, Statement

CHUNK = 1 << 20
REVOKED_DIR = ".revoked"  # where the deployer keeps retired versions
MAX_MARK_BYTES = 16_384
MAX_TREE_FILES = 100_000  # files of a folder artifact read (the deployer's ceiling)
MAX_RETIRED = 10_000  # retired versions of one model read offline; more is refused, not half-checked


@dataclass(frozen=True)
class Place:
    """Where PATH is. `given` is the folder as the caller named it, made absolute without
    resolving links: the names a serving platform serves it under (a link
    `<model>/<version>` -> elsewhere is served as <model> <version>). `folder` and `artifact` are
    resolved: what is read, and what a caller should load."""

    given: Path
    folder: Path
    artifact: Path | None  # None: the folder was named; the attestation's subject says which file


def locate(path: Path) -> Place:
    given = Path(os.path.abspath(path))  # "." is the folder's own name, not ""
    try:
        real = given.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise AttestationError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    if real.is_dir() and not (real / ATTESTATION_FILE).exists() and (real.parent / ATTESTATION_FILE).exists():
        return Place(given.parent, real.parent, real)  # a folder artifact, named itself
    if real.is_dir():
        return Place(given, real, None)
    if real.name in (ATTESTATION_FILE, MANIFEST_FILE):
        return Place(given.parent, real.parent, None)
    return Place(given.parent, real.parent, real)


def open_regular(file: Path) -> BinaryIO:
    """`file` opened for reading if it is a regular file itself (not a link, FIFO or device);
    OSError (FileNotFoundError when missing) or AttestationError otherwise."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise AttestationError(f"{file} is a symbolic link: verify reads only the files themselves") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise AttestationError(f"{file} is not a regular file")
        return open(fd, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    except BaseException:
        os.close(fd)
        raise


def read_envelope(folder: Path) -> attestation.Envelope:
    file = folder / ATTESTATION_FILE
    try:
        with open_regular(file) as f:
            raw = f.read(attestation.MAX_ENVELOPE_BYTES + 1)
    except FileNotFoundError:
        raise AttestationError(f"no attestation: {file} does not exist (was it deployed by Signoff?)") from None
    except OSError as exc:
        raise AttestationError(f"{file}: {exc.strerror}") from None
    return attestation.read_envelope(raw)


def only_attested_files(folder: Path, name: str) -> None:
    """A server loading the folder loads only what was attested (manifest.json is the deployer's)."""
    extra = sorted(set(os.listdir(folder)) - {name, ATTESTATION_FILE, MANIFEST_FILE, REVOKED_FILE})
    if extra:
        raise AttestationError(f"{folder} holds {extra[0]!r}" + (f" and {len(extra) - 1} more" if extra[1:] else "")
                               + f", which the attestation does not cover (it attests {name!r})")


def check_digest(artifact: Path, expected: str) -> None:
    """The attested sha256 of a file; of a folder artifact, its tree digest (shared.sources.tree).
    A file that reads as a tree listing is refused: its sha256 is a folder's digest."""
    if stat.S_ISDIR(_mode(artifact)):
        return _check_tree(artifact, expected)
    from shared.sources import tree

    digest, head = hashlib.sha256(), tree.FileHead()
    try:
        with open_regular(artifact) as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
                head.feed(chunk)
    except OSError as exc:
        raise AttestationError(f"the attested artifact {artifact} cannot be read: {exc.strerror}") from None
    if tree.reads_as_listing(head.head):  # it would have a folder's digest: no release is such a file
        raise AttestationError(f"{artifact.name} is a file that reads as a folder's tree listing, not a model; "
                               "a release is never such a file (docs/sources.md)")
    if digest.hexdigest() != expected:
        raise AttestationError(f"{artifact.name} has sha256 {digest.hexdigest()}, the attestation says {expected}: "
                               "the file was changed")


def _mode(path: Path) -> int:
    try:
        return path.lstat().st_mode
    except OSError:
        return 0  # missing: open_regular says so


def _check_tree(folder: Path, expected: str) -> None:
    """A folder artifact (an MLflow model, a SavedModel): every file hashed as the deployer hashed
    it, through directory descriptors (no symbolic link followed, no FIFO or device read)."""
    from shared.sources import ArtifactError
    from shared.sources.local import hash_tree

    try:
        measured, _, _ = hash_tree(folder, folder.as_uri(), 2**62, MAX_TREE_FILES, allow_hard_links=True)
    except ArtifactError as exc:
        raise AttestationError(f"the attested folder {folder} cannot be verified: {exc}") from None
    if measured != expected:
        raise AttestationError(f"{folder.name}/ has tree digest {measured}, the attestation says {expected}: "
                               "a file in it was changed, added or removed")


def revoked_offline(place: Place, statement: Statement) -> str | None:
    """Why the store's own marks say this release was revoked, or None: the folder is kept under
    `.revoked/`, holds a REVOKED file, or the store retired a version with the same submission or
    the same bytes (matched by its attestation, whatever the folder is called now)."""
    if REVOKED_DIR in place.given.parts or REVOKED_DIR in place.folder.parts:
        return f"kept under {REVOKED_DIR}/ of the model store"
    if (why := _mark(place.folder)) is not None:
        return why
    p = statement.predicate
    for root in dict.fromkeys((place.given.parent.parent, place.folder.parent.parent)):
        if why := _retired(root / REVOKED_DIR / p.model, statement):
            return why
    return None


def _mark(folder: Path) -> str | None:
    """The REVOKED file's who and why; any entry of that name denies, readable or not."""
    try:
        with open_regular(folder / REVOKED_FILE) as f:
            data = json.loads(f.read(MAX_MARK_BYTES))
        return f"marked in the model store by {data['requested_by']}: {data['reason']}"[:300]
    except FileNotFoundError:
        return None
    except (OSError, AttestationError, ValueError, KeyError, TypeError):
        return "marked REVOKED in the model store"


def _retired(retired: Path, statement: Statement) -> str | None:
    try:
        names = os.listdir(retired)
    except OSError:
        return None  # no version of this model was retired here
    if len(names) > MAX_RETIRED:
        raise AttestationError(f"{retired} holds {len(names)} retired versions, more than the {MAX_RETIRED} "
                               "verify reads offline: check with --online, or archive the oldest elsewhere")
    sid, sha = statement.predicate.submission_id, statement.artifact.digest.sha256
    for name in sorted(names):
        kept = retired / name
        try:
            claimed = attestation.claimed_statement(read_envelope(kept))
        except AttestationError:
            continue  # retired before attestations, or unreadable: it names no release
        if claimed.predicate.submission_id == sid or claimed.artifact.digest.sha256 == sha:
            same = "release" if claimed.predicate.submission_id == sid else "artifact (same sha256)"
            mark = _mark(kept)
            return f"the same {same} was retired into {kept}" + (f"; {mark}" if mark else "")
    return None
