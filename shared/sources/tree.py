"""The digest of a folder artifact (an MLflow model, a SavedModel, a Hugging Face folder): one sha256
over the set of its files, reproducible with coreutils. Pure: names and digests in, a digest out.

The listing is one line per regular file, `<sha256 hex>  <relative path>\\n` (exactly what
`sha256sum` prints), relative POSIX paths sorted bytewise (their UTF-8 bytes, as `LC_ALL=C sort`
orders them); the folder's digest is the sha256 of that listing. From a shell (docs/sources.md):

    (cd DIR && find . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 -r sha256sum --) | sha256sum

A single file's digest stays the sha256 of its bytes, so nothing changes for existing submissions.
So that a digest still names one kind of artifact, a single file whose bytes read as a listing
(they begin `<64 lowercase hex>  `, as every listing does) is refused as an artifact by every source
(`FileHead`): its sha256 would be the digest of the folder it lists, and a file approved at check
time could be swapped for that folder, unscanned, with the digest still matching.

Names that would make the listing ambiguous, or its shell reproduction differ, are refused rather
than escaped: a newline or another control character (one path could pass for two lines), a
backslash (`sha256sum` escapes such names, so its line would differ), text that is not UTF-8, an
empty, `.` or `..` segment (a folder climbing out of itself, or two spellings of one file), an
absolute path; a path that is also the folder of another (`x` and `x/y`: possible in S3, where keys
are not paths, but no local folder can hold both). The count of files is capped, so a folder cannot
make a listing of unbounded size.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import NamedTuple

from shared.sources.base import ArtifactError

MAX_FILES = 10_000  # a Hugging Face or MLflow folder holds tens; sharded checkpoints some hundreds
MAX_PATH_BYTES = 1024  # S3's own limit on a key


class TreeFile(NamedTuple):
    """One file of a folder artifact: its path relative to the folder, its sha256, its size."""

    path: str
    sha256: str
    size: int


def name_problem(path: str) -> str | None:
    """Why `path` (relative, '/'-separated) cannot be in a folder artifact's listing, or None."""
    if not path:
        return "an empty name"
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:  # a local name that is not UTF-8 arrives surrogate-escaped
        return "a name that is not UTF-8"
    if len(encoded) > MAX_PATH_BYTES:
        return f"a path longer than {MAX_PATH_BYTES} bytes"
    if any(c < " " or c == "\x7f" for c in path):
        return "a newline or another control character in its name"
    if "\\" in path:
        return "a backslash in its name"
    if path.startswith("/"):
        return "an absolute path"
    if any(segment in ("", ".", "..") for segment in path.split("/")):
        return "an empty, '.' or '..' path segment"
    return None


def shown_name(path: str) -> str:
    """A refused name as a message may show it: escaped, and cut short."""
    text = path.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
    return repr(text if len(text) <= 120 else text[:117] + "...")


def check_name(where: str, path: str) -> str:
    """`path` if it may be listed; else ArtifactError naming the folder (`where`) and the fix."""
    problem = name_problem(path)
    if problem is not None:
        raise ArtifactError(f"{where}: file {shown_name(path)} has {problem}; rename it (folder artifacts "
                            "hold plain relative names, see docs/sources.md)")
    return path


def check_count(where: str, count: int, max_files: int = MAX_FILES) -> None:
    if count > max_files:
        raise ArtifactError(f"{where} holds more than {max_files} files; package the model in fewer files")


def listing(files: Iterable[TreeFile], where: str = "artifact folder", max_files: int = MAX_FILES) -> bytes:
    """The folder's listing (see the module), after checking every name, the count and duplicates."""
    entries = list(files)
    check_count(where, len(entries), max_files)
    if not entries:
        raise ArtifactError(f"{where} holds no files; point the URI at the model's folder")
    for entry in entries:
        check_name(where, entry.path)
    entries.sort(key=lambda e: e.path.encode("utf-8"))
    for before, after in zip(entries, entries[1:], strict=False):
        if before.path == after.path:
            raise ArtifactError(f"{where} lists {shown_name(after.path)} twice")
    check_no_file_is_a_folder(where, (e.path for e in entries))
    return b"".join(f"{e.sha256}  {e.path}\n".encode() for e in entries)


def digest(files: Iterable[TreeFile], where: str = "artifact folder", max_files: int = MAX_FILES) -> str:
    """The folder's digest: the sha256 of its listing."""
    return hashlib.sha256(listing(files, where, max_files)).hexdigest()


def check_no_file_is_a_folder(where: str, names: Iterable[str]) -> None:
    """Refuse `x` beside `x/y` (S3 keys can be both): the listing could be digested, but no
    folder can be written from it. Checked before a listed folder is downloaded, too."""
    paths = set(names)
    for path in sorted(paths):
        parts = path.split("/")
        for depth in range(1, len(parts)):
            if (parent := "/".join(parts[:depth])) in paths:
                raise ArtifactError(f"{where} holds both a file {shown_name(parent)} and files under "
                                    f"{shown_name(parent + '/')}; rename one (a folder artifact must be a folder "
                                    "a disk can hold)")


# --- a single file that reads as a listing ------------------------------------------------------

LISTING_HEAD = re.compile(rb"[0-9a-f]{64}  ")  # how every listing begins (a folder holds a file)
HEAD_BYTES = 66


def reads_as_listing(head: bytes) -> bool:
    """Whether a file beginning with `head` (its first HEAD_BYTES bytes, or all of a shorter file)
    could be a folder's listing, and so have a folder's digest."""
    return LISTING_HEAD.match(head) is not None


def listing_refused(where: str) -> ArtifactError:
    return ArtifactError(f"{where} is a single file that reads as a folder's tree listing (it begins "
                         "'<sha256 hex>  '): its sha256 would be the digest of the folder it lists, so "
                         "it is not accepted as an artifact; submit the model folder itself, or the "
                         "model file (see docs/sources.md)")


class FileHead:
    """The first bytes of a single-file artifact, fed chunk by chunk as it is hashed; `check`
    refuses it when it reads as a listing (see the module)."""

    def __init__(self) -> None:
        self.head = b""

    def feed(self, chunk: bytes) -> None:
        if len(self.head) < HEAD_BYTES:
            self.head += chunk[:HEAD_BYTES - len(self.head)]

    def check(self, where: str) -> None:
        if reads_as_listing(self.head):
            raise listing_refused(where)
