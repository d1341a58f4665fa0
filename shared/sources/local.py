"""The `file` scheme: an artifact (a file, or a folder: `shared.sources.tree`) read in place under
an allowed root, hashed off the event loop.

Also the hashing and verified copy the deployer's model store uses on local files and folders.
A folder is walked through directory file descriptors, every entry opened relative to its parent
with O_NOFOLLOW: a symbolic link anywhere in it, or swapped in while it is read, is refused, so
the walk never leaves the folder that was resolved under the root.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from shared.sources import tree
from shared.sources.base import CHUNK, INLINE_BYTES, ArtifactError, Digested, Fetched
from shared.sources.policy import check_links, resolve, too_big

if TYPE_CHECKING:
    from shared.sources import ArtifactSource


async def fetch(uri: str, source: ArtifactSource, max_bytes: int) -> Fetched:
    """The file or folder at `uri` if it lies under `source.roots` (see `policy.resolve`) and each
    file is its only name there (see `policy.check_links`); never copied."""
    path = resolve(uri, source.roots)
    if path.is_dir():
        digest, size, files = await asyncio.to_thread(hash_tree, path, uri, max_bytes, source.max_files,
                                                      source.allow_hard_links)
        return Fetched(path, digest, size, temporary=False, files=files, folder=True)
    head = tree.FileHead()  # a file that reads as a listing is refused (shared.sources.tree)
    digest, size = await _hash_file(path, uri, max_bytes, source.allow_hard_links, head)
    head.check(f"artifact_uri {uri!r}")
    return Fetched(path, digest, size, temporary=False)


async def digest(uri: str, source: ArtifactSource, max_bytes: int) -> Digested:
    """Read in place anyway: the digest is the fetch's."""
    fetched = await fetch(uri, source, max_bytes)
    return Digested(fetched.sha256, fetched.size, fetched.files, fetched.folder)


async def _hash_file(path: Path, uri: str, max_bytes: int, allow_hard_links: bool,
                     head: tree.FileHead) -> tuple[str, int]:
    """`_hash_capped` on the loop for a small file, capped at INLINE_BYTES read; in a worker thread
    otherwise, or when the inline read refused it (grown meanwhile, or any refusal: the thread's
    answer, with the real limit, is the one given)."""
    try:
        small = 0 <= path.stat().st_size <= INLINE_BYTES  # a hint only: the checks are the open file's
    except OSError:
        small = False
    if small:
        try:
            return _hash_capped(path, uri, min(max_bytes, INLINE_BYTES), allow_hard_links, None, head)
        except ArtifactError:
            if max_bytes <= INLINE_BYTES:
                raise
            head.head = b""  # fed again from the start
    return await asyncio.to_thread(_hash_capped, path, uri, max_bytes, allow_hard_links, None, head)


def _hash_capped(path: Path, uri: str, max_bytes: int, allow_hard_links: bool = False,
                 dir_fd: int | None = None, head: tree.FileHead | None = None) -> tuple[str, int]:
    """Opened once, without following a symbolic link swapped in since `resolve`; the checks
    (a regular file, its link count, its size) are made on that open file, and the bytes hashed
    are read from it (and fed to `head`). Counts the bytes actually read, so a file growing after
    the size check is still capped."""
    digest, size = hashlib.sha256(), 0
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        with open(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ArtifactError(f"artifact_uri {uri!r} is not a regular file; point it at the artifact itself")
            check_links(uri, info.st_nlink, allow_hard_links)
            if (stated := info.st_size) > max_bytes:
                raise too_big(uri, f"{stated} bytes", max_bytes)
            while chunk := f.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise too_big(uri, f"more than {max_bytes} bytes (it grew while read)", max_bytes)
                digest.update(chunk)
                if head is not None:
                    head.feed(chunk)
    except OSError as exc:
        raise ArtifactError(f"artifact_uri {uri!r} cannot be read: {exc.strerror}; "
                            "check that the file exists and the service may read it") from None
    return digest.hexdigest(), size


# --- folders ----------------------------------------------------------------------------------

FileVisitor = Callable[[str, int, int], tree.TreeFile]  # (relative path, parent dir fd, bytes left)


def hash_tree(root: Path, uri: str, max_bytes: int, max_files: int = tree.MAX_FILES,
              allow_hard_links: bool = False) -> tuple[str, int, int]:
    """The tree digest of the folder `root`, its total size (capped by `max_bytes`) and its count
    of files; every file opened as `_hash_capped` opens one (one link, unless allowed)."""
    base = uri.rstrip("/")

    def visit(rel: str, dir_fd: int, left: int) -> tree.TreeFile:
        sha256, size = _hash_capped(Path(rel.rpartition("/")[2]), f"{base}/{rel}", left, allow_hard_links, dir_fd)
        return tree.TreeFile(rel, sha256, size)

    files = walk(root, uri, max_bytes, max_files, visit)
    return tree.digest(files, f"artifact_uri {uri!r}", max_files), sum(f.size for f in files), len(files)


def walk(root: Path, uri: str, max_bytes: int, max_files: int, visit: FileVisitor) -> list[tree.TreeFile]:
    """`visit` every regular file below `root` (refusing links, special files, names the tree
    digest refuses, more than `max_files` files or `max_bytes` in all); empty folders are skipped,
    as `find -type f` skips them."""
    where = f"artifact_uri {uri!r}"
    files: list[tree.TreeFile] = []
    total = 0

    def folder(dir_fd: int, prefix: str) -> None:
        nonlocal total
        with os.scandir(dir_fd) as entries:
            names = sorted(entry.name for entry in entries)
        for name in names:
            rel = tree.check_name(where, prefix + name)
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            mode = info.st_mode
            if stat.S_ISDIR(mode):
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
                try:
                    folder(child, rel + "/")
                finally:
                    os.close(child)
            elif stat.S_ISREG(mode):
                tree.check_count(where, len(files) + 1, max_files)
                if total + info.st_size > max_bytes:  # the folder's size in all, before reading on
                    raise too_big(uri, f"more than {max_bytes} bytes in all", max_bytes)
                entry = visit(rel, dir_fd, max_bytes - total)
                total += entry.size
                files.append(entry)
            else:
                raise ArtifactError(f"{where}: {tree.shown_name(rel)} is a symbolic link or a special file; a "
                                    "folder artifact holds regular files and folders only (copy the target in)")

    try:
        top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            folder(top, "")
        finally:
            os.close(top)
    except OSError as exc:
        raise ArtifactError(f"{where} cannot be read: {exc.strerror}; check that the folder exists "
                            "and the service may read it") from None
    return files


def copy_tree_verified(source: Path, dest: Path, expected_sha256: str, max_files: int = tree.MAX_FILES) -> None:
    """Copy the folder `source` to `dest` (which must not exist), hashing every file as it is
    written; fsync each, and raise if the copy's tree digest is not the expected one."""
    dest.mkdir()

    def visit(rel: str, dir_fd: int, left: int) -> tree.TreeFile:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(rel.rpartition("/")[2], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        with open(fd, "rb") as src, open(target, "xb") as out:
            sha256, size = _copy(src, out)
        return tree.TreeFile(rel, sha256, size)

    files = walk(source, source.as_uri(), 2**63, max_files, visit)
    measured = tree.digest(files, f"folder {str(source)!r}", max_files)
    if measured != expected_sha256:
        raise ArtifactError(f"artifact digest is {measured}, approved digest is {expected_sha256}: "
                            "the artifact changed since it was checked")


def _copy(src: BinaryIO, out: BinaryIO) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := src.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
        out.write(chunk)
    out.flush()
    os.fsync(out.fileno())
    return digest.hexdigest(), size


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


async def sha256_of(path: Path) -> str:
    """Stream the file through sha256 in a worker thread; the event loop keeps serving."""
    return await asyncio.to_thread(sha256_file, path)


def copy_verified(source: Path, dest: Path, expected_sha256: str) -> None:
    """Copy `source` to `dest`, hashing the bytes as they are written; fsync, and raise if the
    copy is not exactly the expected artifact (so what lands is what was approved)."""
    digest = hashlib.sha256()
    with open(source, "rb") as src, open(dest, "xb") as out:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if digest.hexdigest() != expected_sha256:
        raise ArtifactError(
            f"artifact digest is {digest.hexdigest()}, approved digest is {expected_sha256}: "
            "the artifact changed since it was checked"
        )
