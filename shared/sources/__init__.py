"""Reading artifacts safely: only from allowed places, size-capped, streamed, hashed off the event loop.

Used by the validator (to check the digest, and to read model cards and evaluation files) and the
deployer (to copy exactly the approved bytes). `ArtifactSource.fetch` picks the source module by the
URI's scheme in `SCHEMES`: `file://` is read in place under an allowed root (`local`), `http(s)://`
is downloaded from under an allowed URL prefix (`http`). The allow-lists themselves are in `policy`.
Adding a source is one module and one line in `SCHEMES` (docs/sources.md).

The registry names each module rather than importing it (as fsspec's `known_implementations` do):
a source's client library (httpx here) is imported when a URI first needs it, so importing the
pure `policy` module, or the validator's decisions, pulls in no I/O library.
"""

from __future__ import annotations

import asyncio
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from shared.sources.base import ArtifactError, Fetched
from shared.sources.policy import scheme_of, shown

if TYPE_CHECKING:
    from shared.settings import ArtifactSourceSettings

__all__ = ["SCHEMES", "ArtifactError", "ArtifactSource", "Fetched", "Scheme", "SchemeFetch"]


class SchemeFetch(Protocol):
    """What a source module defines as `fetch`: the artifact's bytes in a local file, hashed, at
    most `max_bytes` long; or ArtifactError."""

    async def __call__(self, uri: str, source: ArtifactSource, max_bytes: int) -> Fetched: ...


class Scheme(NamedTuple):
    """One kind of artifact source: the module defining its `fetch` (a `SchemeFetch`)."""

    module: str
    downloads: bool = False  # writes into `ArtifactSource.workdir`, which is created first

    def fetch(self) -> SchemeFetch:
        return importlib.import_module(self.module).fetch


SCHEMES: dict[str, Scheme] = {
    "file": Scheme("shared.sources.local"),
    "http": Scheme("shared.sources.http", downloads=True),
    "https": Scheme("shared.sources.http", downloads=True),
}


@dataclass(frozen=True, kw_only=True)
class ArtifactSource:
    """Where artifacts may be read from and how much of them: `file://` in place under `roots`
    (files with one link only, unless `allow_hard_links`), `http(s)://` under `url_prefixes`,
    downloaded into `workdir` within `timeout` seconds."""

    roots: tuple[Path, ...]
    url_prefixes: tuple[str, ...] = ()
    max_bytes: int = 20 * 2**30
    timeout: float = 600.0
    workdir: Path
    allow_hard_links: bool = False  # see `policy.check_links`

    @classmethod
    def from_settings(cls, settings: ArtifactSourceSettings, workdir: Path) -> ArtifactSource:
        return cls(roots=tuple(settings.artifact_roots), url_prefixes=tuple(settings.artifact_url_prefixes),
                   max_bytes=settings.max_artifact_bytes, timeout=settings.fetch_timeout, workdir=workdir,
                   allow_hard_links=settings.artifact_allow_hard_links)

    async def fetch(self, uri: str, max_bytes: int | None = None) -> Fetched:
        """The artifact at `uri`, at most `max_bytes` long (the source's limit unless given),
        hashed without blocking the event loop. The caller owns the result: `cleanup()` it."""
        scheme = scheme_of(uri)
        source = SCHEMES.get(scheme)
        if source is None:
            raise ArtifactError(f"artifact_uri {shown(uri)!r}: scheme {scheme!r} is not supported; "
                                f"use {_supported()}")
        if source.downloads:
            await self._make_workdir(uri)
        return await source.fetch()(uri, self, self.max_bytes if max_bytes is None else max_bytes)

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
