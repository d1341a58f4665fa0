"""Reading artifacts safely: only from allowed places, size-capped, streamed, hashed off the event loop.

Used by the validator (to check the digest, and to read model cards and evaluation files) and the
deployer (to copy exactly the approved bytes). `ArtifactSource.fetch` picks the source module by the
URI's scheme in `SCHEMES`: `file://` is read in place under an allowed root (`local`), `http(s)://`
is downloaded from under an allowed URL prefix (`http`), `s3://` from under an allowed bucket prefix
(`s3`). A `file://` folder or an `s3://.../` prefix is a folder artifact, digested as `tree` says.
`ArtifactSource.digest` measures without keeping the bytes. The allow-lists themselves are in `policy`.
Adding a source is one module and one line in `SCHEMES` (docs/sources.md).

The registry names each module rather than importing it (as fsspec's `known_implementations` do):
a source's client library (httpx here) is imported when a URI first needs it, so importing the
pure `policy` module, or the validator's decisions, pulls in no I/O library.
"""

from __future__ import annotations

import asyncio
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from shared.sources.base import ArtifactError, Digested, Fetched
from shared.sources.policy import scheme_of, shown

if TYPE_CHECKING:
    from shared.settings import ArtifactSourceSettings

__all__ = ["SCHEMES", "ArtifactError", "ArtifactSource", "Digested", "Fetched", "S3Config", "Scheme",
           "SchemeFetch"]


class SchemeFetch(Protocol):
    """What a source module defines as `fetch`: the artifact's bytes in a local file, hashed, at
    most `max_bytes` long; or ArtifactError."""

    async def __call__(self, uri: str, source: ArtifactSource, max_bytes: int) -> Fetched: ...


class SchemeDigest(Protocol):
    """What a source module may define as `digest`: the artifact's digest, streamed and hashed
    without keeping its bytes; a module without one is digested by `fetch` and `cleanup`."""

    async def __call__(self, uri: str, source: ArtifactSource, max_bytes: int) -> Digested: ...


class Scheme(NamedTuple):
    """One kind of artifact source: the module defining its `fetch` (a `SchemeFetch`)."""

    module: str
    downloads: bool = False  # writes into `ArtifactSource.workdir`, which is created first

    def fetch(self) -> SchemeFetch:
        return importlib.import_module(self.module).fetch

    def digest(self) -> SchemeDigest | None:
        return getattr(importlib.import_module(self.module), "digest", None)


@dataclass(frozen=True, kw_only=True)
class S3Config:
    """How the `s3` source reaches S3 (credentials: the standard AWS chain, never here)."""

    endpoint_url: str | None = None
    region: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_attempts: int = 3


SCHEMES: dict[str, Scheme] = {
    "file": Scheme("shared.sources.local"),
    "http": Scheme("shared.sources.http", downloads=True),
    "https": Scheme("shared.sources.http", downloads=True),
    "s3": Scheme("shared.sources.s3", downloads=True),
}


@dataclass(frozen=True, kw_only=True)
class ArtifactSource:
    """Where artifacts may be read from and how much of them: `file://` in place under `roots`
    (files with one link only, unless `allow_hard_links`), `http(s)://` under `url_prefixes`,
    `s3://` under `s3_prefixes`, downloaded into `workdir` within `timeout` seconds; a folder
    artifact holds at most `max_files` files and `max_bytes` in all."""

    roots: tuple[Path, ...]
    url_prefixes: tuple[str, ...] = ()
    max_bytes: int = 20 * 2**30
    timeout: float = 600.0
    workdir: Path
    allow_hard_links: bool = False  # see `policy.check_links`
    s3_prefixes: tuple[str, ...] = ()
    s3: S3Config = S3Config()
    max_files: int = 10_000
    # Bytes read and hashed so far, per scheme: signoff_artifact_bytes_hashed_total reads it.
    hashed: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings: ArtifactSourceSettings, workdir: Path) -> ArtifactSource:
        s3 = S3Config(endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
                      connect_timeout=settings.s3_connect_timeout, read_timeout=settings.s3_read_timeout,
                      max_attempts=settings.s3_max_attempts)
        return cls(roots=tuple(settings.artifact_roots), url_prefixes=tuple(settings.artifact_url_prefixes),
                   max_bytes=settings.max_artifact_bytes, timeout=settings.fetch_timeout, workdir=workdir,
                   allow_hard_links=settings.artifact_allow_hard_links,
                   s3_prefixes=tuple(settings.artifact_s3_prefixes), s3=s3, max_files=settings.max_artifact_files)

    async def fetch(self, uri: str, max_bytes: int | None = None) -> Fetched:
        """The artifact at `uri`, at most `max_bytes` long (the source's limit unless given),
        hashed without blocking the event loop. The caller owns the result: `cleanup()` it."""
        source = self._scheme(uri)
        if source.downloads:
            await self._make_workdir(uri)
        fetched = await source.fetch()(uri, self, self.max_bytes if max_bytes is None else max_bytes)
        self._tally(uri, fetched.size)
        return fetched

    async def digest(self, uri: str) -> Digested:
        """The digest of the artifact at `uri` (a file's sha256, a folder's tree digest), its size
        and number of files, streamed and hashed without keeping the bytes where the source
        allows it (`file://` and `s3://`; `http(s)://` is downloaded and deleted again)."""
        source = self._scheme(uri)
        digest = source.digest()
        if digest is not None:
            digested = await digest(uri, self, self.max_bytes)
            self._tally(uri, digested.size)
            return digested
        fetched = await self.fetch(uri)  # counted by fetch
        fetched.cleanup()
        return Digested(fetched.sha256, fetched.size, fetched.files, fetched.folder)

    def _tally(self, uri: str, size: int) -> None:
        scheme = scheme_of(uri)
        self.hashed[scheme] = self.hashed.get(scheme, 0) + size

    def _scheme(self, uri: str) -> Scheme:
        scheme = scheme_of(uri)
        source = SCHEMES.get(scheme)
        if source is None:
            raise ArtifactError(f"artifact_uri {shown(uri)!r}: scheme {scheme!r} is not supported; "
                                f"use {_supported()}")
        return source

    async def _make_workdir(self, uri: str) -> None:
        try:
            await asyncio.to_thread(self.workdir.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise ArtifactError(f"cannot download artifact_uri {shown(uri)!r}: workdir {str(self.workdir)!r} "
                                f"is not writable ({exc.strerror}); create it or configure another one") from None


def _supported() -> str:
    """'file://, http:// or https://'"""
    names = [f"{scheme}://" for scheme in SCHEMES]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
