"""Reading artifacts safely: only from allowed places, size-capped, streamed, hashed off the event loop.

Used by the validator (to check the digest) and the deployer (to copy exactly the approved bytes).
`fetch` reads a `file://` artifact under an allowed root in place, or downloads an `http(s)://`
artifact under an allowed URL prefix into a temporary file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import queue
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, unquote, urljoin, urlparse, urlsplit

import httpx

CHUNK = 1024 * 1024
MAX_REDIRECTS = 5
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SEGMENT_SAFE = "!$&'()*+,;=:@-._~"  # RFC 3986 pchar, left as is when a path is re-encoded


class ArtifactError(ValueError):
    """The artifact cannot be used; the message says why and what to do."""


def resolve(uri: str, allowed_roots: tuple[Path, ...]) -> Path:
    """The local path of a `file://` artifact, refusing anything outside the allowed roots
    (after resolving `..` and symbolic links)."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise ArtifactError(f"artifact_uri {uri!r}: only file:// URIs are supported here")
    if parsed.netloc not in ("", "localhost"):
        raise ArtifactError(f"artifact_uri {uri!r}: file URIs must be local (file:///path)")
    path = Path(unquote(parsed.path))
    if not path.is_absolute():
        raise ArtifactError(f"artifact_uri {uri!r}: the path must be absolute")
    real = Path(os.path.realpath(path))
    for root in allowed_roots:
        if real.is_relative_to(Path(os.path.realpath(root))):
            break
    else:
        roots = ", ".join(str(r) for r in allowed_roots) or "(none configured)"
        raise ArtifactError(f"artifact_uri {uri!r} is outside the allowed roots: {roots}")
    if not real.is_file():
        raise ArtifactError(f"artifact_uri {uri!r}: no such file")
    return real


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


@dataclass(frozen=True)
class Fetched:
    """The bytes of an artifact in a local file, with their digest and size."""

    path: Path
    sha256: str
    size: int
    temporary: bool  # `path` is a download the caller owns: call `cleanup()` when done

    def cleanup(self) -> None:
        """Delete a download; an artifact read in place (`temporary=False`) is never touched."""
        if self.temporary:
            self.path.unlink(missing_ok=True)


async def fetch(uri: str, *, roots: tuple[Path, ...], url_prefixes: tuple[str, ...],
                max_bytes: int, timeout: float, workdir: Path) -> Fetched:
    """The artifact at `uri`, at most `max_bytes` long, hashed without blocking the event loop.

    `file://` is read in place under `roots` (see `resolve`); `http(s)://` must lie under one of
    `url_prefixes` and is downloaded into `workdir` within `timeout` seconds.
    """
    try:
        scheme = urlsplit(uri).scheme.lower()
    except ValueError as exc:
        raise ArtifactError(f"artifact_uri {uri!r} is not a valid URI ({exc}); fix the URI") from None
    if scheme == "file":
        path = resolve(uri, roots)
        digest, size = await asyncio.to_thread(_hash_local, path, uri, max_bytes)
        return Fetched(path, digest, size, temporary=False)
    if scheme in _DEFAULT_PORTS:
        return await _download(uri, url_prefixes, max_bytes, timeout, workdir)
    raise ArtifactError(f"artifact_uri {_shown(uri)!r}: scheme {scheme!r} is not supported; "
                        "use file://, http:// or https://")


def _hash_local(path: Path, uri: str, max_bytes: int) -> tuple[str, int]:
    """Counts the bytes actually read, so a file growing after the size check is still capped."""
    digest, size = hashlib.sha256(), 0
    try:
        if (stated := path.stat().st_size) > max_bytes:
            raise _too_big(uri, f"{stated} bytes", max_bytes)
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise _too_big(uri, f"more than {max_bytes} bytes (it grew while read)", max_bytes)
                digest.update(chunk)
    except OSError as exc:
        raise ArtifactError(f"artifact_uri {uri!r} cannot be read: {exc.strerror}; "
                            "check that the file exists and the service may read it") from None
    return digest.hexdigest(), size


def _too_big(uri: str, size: str, max_bytes: int) -> ArtifactError:
    return ArtifactError(f"artifact_uri {_shown(uri)!r} is {size}, over the limit of {max_bytes} bytes; "
                         "publish a smaller artifact or raise the configured size limit")


# --- http(s) ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Url:
    """An http(s) URL reduced to what a server routes on: `..` resolved, segments decoded once."""

    scheme: str
    host: str
    port: int
    segments: tuple[str, ...]
    query: str

    def is_under(self, prefix: _Url) -> bool:
        """Whole path segments: the prefix `/registry` (or `/registry/`) covers `/registry/m.onnx`
        but not `/registry-evil/m.onnx`."""
        base = prefix.segments[:-1] if prefix.segments[-1:] == ("",) else prefix.segments
        return ((self.scheme, self.host, self.port) == (prefix.scheme, prefix.host, prefix.port)
                and self.segments[:len(base)] == base and len(self.segments) > len(base))

    def text(self) -> str:
        """The URL actually requested: exactly the one that was checked."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port == _DEFAULT_PORTS[self.scheme] else f":{self.port}"
        path = "/".join(quote(s, safe=_SEGMENT_SAFE) for s in self.segments)
        return f"{self.scheme}://{host}{port}/{path}" + (f"?{self.query}" if self.query else "")


def _parse(url: str) -> _Url:
    """Raises ValueError saying what is wrong with the URL."""
    if any(not " " < c < "\x7f" or c == "\\" for c in url):
        raise ValueError("it contains spaces, control characters, backslashes or non-ASCII characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("only http:// and https:// can be downloaded")
    if "@" in parts.netloc:
        raise ValueError("user info (user@host) in URLs is not accepted")
    host = parts.hostname or ""
    if not host or "%" in host:
        raise ValueError("it has no valid host")
    port = _DEFAULT_PORTS[scheme] if parts.port is None else parts.port
    segments: list[str] = []
    for raw in parts.path.split("/")[1:] or [""]:
        segment = unquote(raw, errors="strict")
        if any(c in "/\\%\x7f" or c < " " for c in segment):
            raise ValueError("its path encodes '/', '\\', '%' or control characters")
        if segment == "..":
            if not segments:
                raise ValueError("its path climbs above the root with '..'")
            segments.pop()
        elif segment != ".":
            segments.append(segment)
    return _Url(scheme, host, port, tuple(segments) or ("",), parts.query)


def _checked(uri: str, url: str, prefixes: tuple[str, ...]) -> _Url:
    """The parsed `url` (the artifact URI, or where it redirected) if it is under an allowed prefix."""
    what = "artifact_uri" if url == uri else f"artifact_uri {_shown(uri)!r} redirected to"
    try:
        parsed = _parse(url)
    except ValueError as exc:
        raise ArtifactError(f"{what} {_shown(url)!r} is refused: {exc}; "
                            "use a plain URL under an allowed prefix") from None
    if not any(parsed.is_under(_prefix(p)) for p in prefixes):
        allowed = ", ".join(prefixes) or "(none configured)"
        raise ArtifactError(f"{what} {_shown(url)!r} is not under an allowed URL prefix ({allowed}); "
                            "publish the artifact there or add its location to the allowed prefixes")
    return parsed


def _prefix(prefix: str) -> _Url:
    try:
        parsed = _parse(prefix)
    except ValueError as exc:
        raise ArtifactError(f"allowed URL prefix {_shown(prefix)!r} is invalid: {exc}; fix the configuration") from None
    if parsed.query:
        raise ArtifactError(f"allowed URL prefix {prefix!r} has a query; fix the configuration")
    return parsed


def _shown(uri: str) -> str:
    """The URI without user info, so a password never lands in an event or a log."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if "@" not in parts.netloc:
        return uri
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


async def _download(uri: str, prefixes: tuple[str, ...], max_bytes: int, timeout: float,
                    workdir: Path) -> Fetched:
    url = _checked(uri, uri, prefixes)  # before anything touches the network
    try:
        fd, name = tempfile.mkstemp(dir=workdir, prefix=".fetch-", suffix=".part")
    except OSError as exc:
        raise ArtifactError(f"cannot download artifact_uri {_shown(uri)!r}: workdir {str(workdir)!r} is not "
                            f"writable ({exc.strerror}); create it or configure another one") from None
    path, writer = Path(name), _Writer(os.fdopen(fd, "wb"))
    try:
        async with asyncio.timeout(timeout):
            size = await _stream(uri, url, prefixes, max_bytes, timeout, writer)
            digest = await writer.finish()
    except BaseException as exc:
        writer.abort()
        path.unlink(missing_ok=True)
        if isinstance(exc, TimeoutError):
            raise ArtifactError(f"artifact_uri {_shown(uri)!r}: the download did not finish within "
                                f"{timeout} s; retry later or raise the timeout") from None
        if isinstance(exc, httpx.TimeoutException):
            raise ArtifactError(f"artifact_uri {_shown(uri)!r}: the server did not answer within "
                                f"{timeout} s ({type(exc).__name__}); retry later or check the registry") from None
        if isinstance(exc, httpx.HTTPError):
            raise ArtifactError(f"artifact_uri {_shown(uri)!r}: the download failed ({type(exc).__name__}: "
                                f"{exc}); check that the registry is reachable and retry") from None
        if isinstance(exc, OSError):
            raise ArtifactError(f"artifact_uri {_shown(uri)!r}: cannot write the download in "
                                f"{str(workdir)!r} ({exc.strerror}); free space or fix the workdir") from None
        raise
    return Fetched(path, digest, size, temporary=True)


async def _stream(uri: str, url: _Url, prefixes: tuple[str, ...], max_bytes: int, timeout: float,
                  writer: _Writer) -> int:
    """Download into `writer`, following only redirects that pass the same check; the size."""
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            request = client.build_request("GET", url.text(), headers={"Accept-Encoding": "identity"})
            response = await client.send(request, stream=True)
            try:
                if response.is_redirect:
                    url = _checked(uri, urljoin(url.text(), response.headers["Location"]), prefixes)
                    continue
                _check_response(uri, url, response, max_bytes)
                size = 0
                async for chunk in response.aiter_raw(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:  # the Content-Length may have lied, or be absent
                        raise _too_big(uri, f"more than {max_bytes} bytes", max_bytes)
                    await writer.put(chunk)
                return size
            finally:
                await response.aclose()
    raise ArtifactError(f"artifact_uri {_shown(uri)!r}: more than {MAX_REDIRECTS} redirects; "
                        "use the artifact's final URL")


def _check_response(uri: str, url: _Url, response: httpx.Response, max_bytes: int) -> None:
    if response.status_code != 200:
        raise ArtifactError(f"artifact_uri {_shown(uri)!r}: {url.text()} answered {response.status_code} "
                            f"{response.reason_phrase} (200 expected); check that the artifact is published there")
    if response.headers.get("Content-Encoding", "identity").lower() != "identity":
        raise ArtifactError(f"artifact_uri {_shown(uri)!r}: the server sent it with Content-Encoding "
                            f"{response.headers['Content-Encoding']!r}; serve the artifact's bytes unencoded")
    stated = response.headers.get("Content-Length", "")
    if stated.isdigit() and int(stated) > max_bytes:
        raise _too_big(uri, f"{stated} bytes", max_bytes)


class _Writer:
    """Writes and hashes the chunks in a thread of its own while the loop receives the next ones;
    at most `depth` chunks wait in memory. Measured faster for a 256 MiB local download than one
    `asyncio.to_thread` per chunk, which leaves the loop idle while each chunk is hashed."""

    def __init__(self, out: BinaryIO, depth: int = 4) -> None:
        self._loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(depth)
        self._chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._digest = hashlib.sha256()
        self._error: BaseException | None = None
        self._stopped = False
        self._done = self._loop.create_future()
        threading.Thread(target=self._run, args=(out,), name="artifact-writer", daemon=True).start()

    async def put(self, chunk: bytes) -> None:
        await self._slots.acquire()
        if self._error is not None:
            raise self._error
        self._chunks.put(chunk)

    async def finish(self) -> str:
        self._chunks.put(None)
        await self._done
        if self._error is not None:
            raise self._error
        return self._digest.hexdigest()

    def abort(self) -> None:
        """Stop writing; the thread drops what is queued, closes the file and ends."""
        self._stopped = True
        self._chunks.put(None)

    def _run(self, out: BinaryIO) -> None:
        try:
            with out:
                while (chunk := self._chunks.get()) is not None:
                    if self._error is None and not self._stopped:
                        try:
                            self._digest.update(chunk)
                            out.write(chunk)
                        except BaseException as exc:  # raised again in the loop, by `put` or `finish`
                            self._error = exc
                    self._notify(self._slots.release)
        except BaseException as exc:  # flushing on close failed
            self._error = self._error or exc
        finally:
            self._notify(self._finished)

    def _finished(self) -> None:
        if not self._done.done():
            self._done.set_result(None)

    def _notify(self, callback) -> None:
        try:
            self._loop.call_soon_threadsafe(callback)
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more
