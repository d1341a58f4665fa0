"""`signoff digest PATH|URI`: the digest Signoff computes for an artifact, so a person can check it.

A file's digest is the sha256 of its bytes; a folder's (a local folder, or an `s3://bucket/prefix/`)
is the tree digest of shared.sources.tree, reproducible with the coreutils one-liner in
docs/sources.md. The artifact is streamed and hashed; nothing is kept. It reads with the caller's
own rights: any local path they can read, any S3 location their AWS credentials reach (the standard
chain: AWS_* variables, AWS_ENDPOINT_URL_S3 for MinIO, a profile, a role). The services' allow-lists
are theirs to apply when the submission arrives.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from shared.sources import ArtifactError, ArtifactSource, Digested
from shared.sources.policy import scheme_of

MAX_BYTES = 1 << 40  # a local command over the caller's own files: no service limit applies


def source_for(target: str, workdir: Path) -> tuple[str, ArtifactSource]:
    """The artifact's URI, and a source allowed to read exactly it."""
    if scheme_of(target) == "s3":
        return target, ArtifactSource(roots=(), s3_prefixes=(f"s3://{target[5:].partition('/')[0]}/",),
                                      workdir=workdir, max_bytes=MAX_BYTES, max_files=100_000)
    if scheme_of(target) not in ("", "file"):
        raise ArtifactError(f"{target!r}: give a local path, a file:// URI or an s3:// URI")
    path = Path(target.removeprefix("file://")).absolute()
    return path.as_uri(), ArtifactSource(roots=(path.parent,), workdir=workdir, max_bytes=MAX_BYTES,
                                         allow_hard_links=True, max_files=100_000)


async def digest_of(target: str) -> Digested:
    with tempfile.TemporaryDirectory(prefix="signoff-digest-") as workdir:
        uri, source = source_for(target, Path(workdir))
        return await source.digest(uri)


def command(
    target: Annotated[str, typer.Argument(help="A file or folder: a local path, file:///..., s3://bucket/key "
                                          "or s3://bucket/prefix/")],
) -> None:
    """Print the artifact's digest as Signoff computes it: the sha256 of a file, the tree digest of a
    folder (docs/sources.md shows how to compute it with coreutils). Exit 1 with the reason otherwise."""
    try:
        digested = asyncio.run(digest_of(target))
    except ArtifactError as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(1) from None
    kind = "tree digest of the folder" if digested.folder else "sha256 of the file"
    typer.echo(digested.sha256)
    typer.echo(f"{kind}: {digested.files} file(s), {digested.size} bytes", err=True)
