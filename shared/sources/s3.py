"""The `s3` scheme: `s3://bucket/key` (one object) or `s3://bucket/prefix/` (a folder artifact: every
object under the prefix), from AWS S3 or any S3-compatible endpoint (MinIO, Ceph, R2), via boto3.

The URI is checked against the allowed prefixes before anything touches the network
(`policy.checked_s3`). A key without a trailing slash names an object; when no such object exists
but objects lie under `key/`, it names that folder (an MLflow artifact location has no slash).
When both exist the URI is refused as ambiguous: what it names could change from object to folder
by deleting the object. A folder is listed first: its names checked (`tree.check_name`), its count
(with the folder markers, which hold nothing but still cost a listing) and total size capped,
before one byte is downloaded; the listing stops at the read's deadline as the download does.
Each object's body is streamed in chunks and hashed as it arrives (a single object that reads as
a folder's listing is refused: `tree.FileHead`): `digest` keeps nothing; `fetch` writes it into
the source's workdir (a folder into a temporary folder), deleted again whatever goes wrong.
Credentials come from the standard AWS chain (AWS_* variables, a profile, a role), never from
Signoff's settings; timeouts and retries are botocore's (`S3Config`), and the whole read is
bounded by the source's `timeout`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from shared.sources import tree
from shared.sources.base import CHUNK, ArtifactError, Digested, Fetched
from shared.sources.policy import S3Uri, checked_s3, too_big

if TYPE_CHECKING:
    from shared.sources import ArtifactSource, S3Config

READ_CHUNK = 4 * CHUNK  # larger reads: fewer trips through urllib3 per byte
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_DENIED = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
           "ExpiredToken", "AllAccessDisabled"}
_TRANSIENT = {"SlowDown", "500", "503", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling"}


async def fetch(uri: str, source: ArtifactSource, max_bytes: int) -> Fetched:
    """The object, or the folder's objects, downloaded into `source.workdir` and hashed."""
    location = checked_s3(uri, source.s3_prefixes)
    return await _in_thread(_Read(uri, location, source, max_bytes).fetch)


async def digest(uri: str, source: ArtifactSource, max_bytes: int) -> Digested:
    """The object's sha256 (a folder's tree digest), streamed and hashed; no byte is kept."""
    location = checked_s3(uri, source.s3_prefixes)
    return await _in_thread(_Read(uri, location, source, max_bytes).digest)


@functools.lru_cache(maxsize=8)
def client(config: S3Config) -> Any:
    """A boto3 S3 client from the standard AWS credential chain, one per configuration: clients are
    thread-safe, and making one (loading botocore's service models) costs a third of a second.
    Credentials from a role or SSO refresh themselves; `forget_clients()` reads the chain anew."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(region_name=config.region)  # sessions are not thread-safe: one each
    return session.client("s3", endpoint_url=config.endpoint_url, config=Config(
        connect_timeout=config.connect_timeout, read_timeout=config.read_timeout,
        retries={"max_attempts": config.max_attempts, "mode": "standard"}, max_pool_connections=16))


def forget_clients() -> None:
    """Make the next read build its client anew (credentials changed, e.g. in tests)."""
    client.cache_clear()


async def _in_thread(work: Callable[[threading.Event], Any]) -> Any:
    """Run `work` in a worker thread. If the caller is cancelled, tell it to stop (it deletes what
    it wrote at its next chunk), and delete a download it finished meanwhile, which nobody owns."""
    stop = threading.Event()
    future = asyncio.get_running_loop().run_in_executor(None, work, stop)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        stop.set()
        future.add_done_callback(_discard)
        raise


def _discard(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is None and isinstance(future.result(), Fetched):
        future.result().cleanup()


class _Read:
    """One read of an object or a folder, in a worker thread."""

    def __init__(self, uri: str, location: S3Uri, source: ArtifactSource, max_bytes: int) -> None:
        self.uri, self.location, self.source, self.max_bytes = uri, location, source, max_bytes
        self.deadline = time.monotonic() + source.timeout
        self.where = f"artifact_uri {uri!r}"

    def digest(self, stop: threading.Event) -> Digested:
        return self._translated(self._digest, stop)

    def fetch(self, stop: threading.Event) -> Fetched:
        return self._translated(self._fetch, stop)

    def _translated(self, work: Callable[[threading.Event], Any], stop: threading.Event) -> Any:
        try:
            return work(stop)
        except ArtifactError:
            raise
        except Exception as exc:  # noqa: BLE001 - botocore's, urllib3's, the disk's: each said plainly
            raise _artifact_error(self.where, exc) from None

    def _digest(self, stop: threading.Event) -> Digested:
        s3 = client(self.source.s3)
        objects = self._objects(s3)
        if objects is None:
            sha256, size = self._single(s3, None, stop)
            return Digested(sha256, size, 1)
        files = self._each(s3, objects, lambda rel: None, stop)
        return Digested(tree.digest(files, self.where), sum(f.size for f in files), len(files), True)

    def _fetch(self, stop: threading.Event) -> Fetched:
        workdir = self.source.workdir
        s3 = client(self.source.s3)
        objects = self._objects(s3)
        if objects is None:
            fd, name = tempfile.mkstemp(dir=workdir, prefix=".fetch-", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out:
                    sha256, size = self._single(s3, out, stop)
            except BaseException:
                Path(name).unlink(missing_ok=True)
                raise
            return Fetched(Path(name), sha256, size, temporary=True)
        folder = Path(tempfile.mkdtemp(dir=workdir, prefix=".fetch-"))
        try:
            files = self._each(s3, objects, lambda rel: _file_in(folder, rel), stop)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return Fetched(folder, tree.digest(files, self.where), sum(f.size for f in files), temporary=True,
                       files=len(files), folder=True)

    def _single(self, s3: Any, out: BinaryIO | None, stop: threading.Event) -> tuple[str, int]:
        """The one object's sha256 and size; refused when it reads as a folder's listing."""
        head = tree.FileHead()
        sha256, size = self._stream(s3, self.location.key, self.max_bytes, out, stop, head)
        head.check(self.where)
        return sha256, size

    def _in_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise ArtifactError(f"{self.where}: the read did not finish within {self.source.timeout} s; "
                                "retry later or raise the timeout", transient=True)

    def _objects(self, s3: Any) -> list[tuple[str, int]] | None:
        """None for a single object; else the folder's (relative name, size), checked and capped."""
        key = self.location.key
        bucket = self.location.bucket
        if not self.location.is_folder:
            try:
                s3.head_object(Bucket=bucket, Key=key)
            except Exception as exc:  # noqa: BLE001 - anything but "not found" is raised as it is
                if _code(exc) not in _NOT_FOUND:
                    raise
            else:
                if s3.list_objects_v2(Bucket=bucket, Prefix=key + "/", MaxKeys=1).get("Contents"):
                    raise ArtifactError(f"{self.where} is ambiguous: both an object of that key and objects "
                                        f"under {key + '/'!r} exist; give the folder with a trailing '/', or "
                                        "delete or move the one that is not the model")
                return None
            key += "/"  # no such object: a folder of that name, as MLflow names its artifacts
        objects: list[tuple[str, int]] = []
        # Every key listed counts, folder markers too (they are skipped, not free): at most twice
        # the files allowed, so a prefix of markers cannot keep the listing going.
        max_keys, listed = 2 * self.source.max_files, 0
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=key, PaginationConfig={"PageSize": min(1000, max_keys + 1)})
        for page in pages:
            self._in_time()
            for item in page.get("Contents", ()):
                listed += 1
                if listed > max_keys:
                    raise ArtifactError(f"{self.where} lists more than {max_keys} keys (files and folder "
                                        "markers); package the model in fewer files")
                rel = item["Key"][len(key):]
                if (rel == "" or rel.endswith("/")) and item["Size"] == 0:
                    continue  # a "folder" marker some consoles and tools write: no content
                tree.check_name(self.where, rel)
                objects.append((rel, item["Size"]))
                tree.check_count(self.where, len(objects), self.source.max_files)
        tree.check_no_file_is_a_folder(self.where, (rel for rel, _ in objects))  # before any download
        if not objects:
            what = "object or folder" if not self.location.is_folder else "folder (no object under it)"
            raise ArtifactError(f"{self.where}: no such {what}; check the bucket and key, and that the model "
                                "was uploaded")
        if (total := sum(size for _, size in objects)) > self.max_bytes:
            raise too_big(self.uri, f"{total} bytes in {len(objects)} objects", self.max_bytes)
        return objects

    def _each(self, s3: Any, objects: list[tuple[str, int]], open_out: Callable[[str], BinaryIO | None],
              stop: threading.Event) -> list[tree.TreeFile]:
        files, total = [], 0
        base = self.location.key if self.location.is_folder else self.location.key + "/"
        for rel, _ in objects:
            out = open_out(rel)
            try:
                sha256, size = self._stream(s3, base + rel, self.max_bytes - total, out, stop)
            finally:
                if out is not None:
                    out.close()
            total += size
            files.append(tree.TreeFile(rel, sha256, size))
        return files

    def _stream(self, s3: Any, key: str, max_bytes: int, out: BinaryIO | None,
                stop: threading.Event, head: tree.FileHead | None = None) -> tuple[str, int]:
        """GetObject's body, chunk by chunk: hashed, written to `out` if any, counted against the
        cap, fed to `head` if any. The deadline is looked at before the request too: an empty
        object has no chunk to look at it."""
        self._in_time()
        response = s3.get_object(Bucket=self.location.bucket, Key=key)
        body = response["Body"]
        if (stated := response.get("ContentLength", 0)) > max_bytes:
            body.close()
            raise too_big(self.uri, f"{stated} bytes", max_bytes)
        sink, size = _Sink(out), 0
        try:
            for chunk in body.iter_chunks(READ_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise too_big(self.uri, f"more than {max_bytes} bytes (it grew while read)", max_bytes)
                if stop.is_set():
                    raise ArtifactError(f"{self.where}: the read was cancelled")
                self._in_time()
                if head is not None:
                    head.feed(chunk)
                sink.put(chunk)
            return sink.finish(), size
        finally:
            sink.stop()
            body.close()


class _Sink:
    """Hashes (and writes) the chunks in a thread of its own while the reader receives the next:
    the read and the hash overlap instead of adding up (measured on bench/s3.py). At most `depth`
    chunks wait in memory."""

    def __init__(self, out: BinaryIO | None, depth: int = 4) -> None:
        self.out, self.digest = out, hashlib.sha256()
        self.chunks: queue.Queue[bytes | None] = queue.Queue(depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="s3-hash", daemon=True)
        self.thread.start()

    def put(self, chunk: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.chunks.put(chunk)

    def finish(self) -> str:
        self.stop()
        if self.error is not None:
            raise self.error
        return self.digest.hexdigest()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.chunks.put(None)
            self.thread.join()

    def _run(self) -> None:
        while (chunk := self.chunks.get()) is not None:
            if self.error is None:
                try:
                    self.digest.update(chunk)
                    if self.out is not None:
                        self.out.write(chunk)
                except BaseException as exc:  # raised in the reader, by `put` or `finish`
                    self.error = exc


def _artifact_error(where: str, exc: Exception) -> ArtifactError:
    """botocore's errors (and a download folder that cannot be written) as ArtifactError: what
    went wrong, and what to do."""
    from botocore import exceptions as bx

    if isinstance(exc, OSError) and not _is_botocore(exc):
        return ArtifactError(f"cannot download {where}: the download folder cannot be written "
                             f"({exc.strerror}); free space or fix the workdir")

    code = _code(exc)
    if code in _NOT_FOUND or code == "NoSuchBucket":
        return ArtifactError(f"{where}: no such {'bucket' if code == 'NoSuchBucket' else 'object'}; "
                             "check the URI and that the model was uploaded")
    if code in _DENIED:
        return ArtifactError(f"{where}: S3 refused access ({code}); check the credentials the AWS chain "
                             "finds (AWS_* variables, profile, role) and the bucket's policy")
    if code is not None:
        return ArtifactError(f"{where}: S3 answered {code}; retry later or check the bucket",
                             transient=code in _TRANSIENT)
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return ArtifactError(f"{where}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
                             "AWS_SECRET_ACCESS_KEY, a profile (AWS_PROFILE) or a role for the service")
    if isinstance(exc, bx.ConnectTimeoutError | bx.ReadTimeoutError):
        return ArtifactError(f"{where}: S3 did not answer in time ({type(exc).__name__}); retry later or "
                             "check the endpoint", transient=True)
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectionClosedError | bx.ResponseStreamingError):
        return ArtifactError(f"{where}: cannot reach S3 ({type(exc).__name__}); check that the endpoint "
                             "is reachable and retry", transient=True)
    return ArtifactError(f"{where}: the S3 read failed ({type(exc).__name__}); check the configuration")


def _code(exc: BaseException) -> str | None:
    """The S3 error code of a botocore ClientError, else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or response.get("ResponseMetadata", {}).get(
            "HTTPStatusCode", "")) or None
    return None


def _is_botocore(exc: BaseException) -> bool:
    return type(exc).__module__.startswith(("botocore", "urllib3"))


def _file_in(folder: Path, rel: str) -> BinaryIO:
    """A new file at `rel` (a name `tree.check_name` accepted: no '..', not absolute) in `folder`."""
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "xb")  # noqa: SIM115 - closed by the caller

