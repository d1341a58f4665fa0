"""`signoff verify s3://bucket/prefix/<model>/<version>/`: a version the s3 deploy target wrote,
downloaded into a temporary folder `<model>/<version>/` and checked there as a model store's
version folder is (signoff/verify.py): the attestation, its signer, the digest, a REVOKED mark.

The download is bounded (files, bytes, names as a folder artifact may hold them) and reads with
the standard AWS chain (credentials; AWS_ENDPOINT_URL_S3 for MinIO, R2 or a test server).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from services.deployer.targets._s3_layout import SEGMENT, bucket_problem
from shared import signing
from shared.sources import tree
from shared.sources.base import CHUNK
from signoff.verify import Revocations, Verdict, verify

MAX_BYTES = 20 * 2**30  # the deployer's default artifact cap
MAX_FILES = tree.MAX_FILES


def split(uri: str) -> tuple[str, str, str, str]:
    """(bucket, key of the version folder ending in '/', model, version); ValueError says what is wrong."""
    if not uri.startswith("s3://") or not uri.endswith("/"):
        raise ValueError(f"{uri!r} is not a version folder: give s3://bucket/prefix/<model>/<version>/")
    bucket, _, key = uri[len("s3://"):].partition("/")
    if problem := bucket_problem(bucket):
        raise ValueError(problem)
    segments = key.rstrip("/").split("/")
    if len(segments) < 2 or not all(SEGMENT.fullmatch(s) for s in segments):
        raise ValueError(f"{uri!r}: the key must be safe segments ending in <model>/<version>/ (no '..')")
    return bucket, key, segments[-2], segments[-1]


def download(s3: Any, uri: str, dest: Path, max_bytes: int = MAX_BYTES, max_files: int = MAX_FILES) -> Path:
    """Copy the version folder at `uri` into `dest/<model>/<version>/`; returns that folder."""
    bucket, key, model, version = split(uri)
    folder = dest / model / version
    folder.mkdir(parents=True)
    listed = _listing(s3, uri, bucket, key, max_bytes, max_files)
    left = max_bytes
    for item in listed:
        rel = tree.check_name(uri, item["Key"][len(key):])
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        with s3.get_object(Bucket=bucket, Key=item["Key"])["Body"] as body, open(folder / rel, "xb") as out:
            while chunk := body.read(CHUNK):
                left -= len(chunk)
                if left < 0:  # grown since it was listed
                    raise ValueError(f"{uri} holds more than {max_bytes} bytes")
                out.write(chunk)
    return folder


def _listing(s3: Any, uri: str, bucket: str, key: str, max_bytes: int, max_files: int) -> list[dict]:
    """The version folder's objects, the count and the total size checked page by page: a folder
    of millions of keys is refused at the first page past the cap, never listed whole."""
    listed: list[dict] = []
    total = 0
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=key, PaginationConfig={"PageSize": min(1000, max_files + 1)})
    for page in pages:
        for item in page.get("Contents", []):
            listed.append(item)
            tree.check_count(uri, len(listed), max_files)
            total += item["Size"]
            if total > max_bytes:
                raise ValueError(f"{uri} holds more than {max_bytes} bytes")
    if not listed:
        raise ValueError(f"nothing is deployed at {uri}")
    tree.check_no_file_is_a_folder(uri, (item["Key"][len(key):] for item in listed))  # no disk holds both
    return listed


def verify_s3(uri: str, keyring: signing.Keyring, *, revoked: Revocations | None = None, s3: Any = None,
              expected_model: str | None = None, expected_version: str | None = None) -> Verdict:
    """`verify` of the version folder at `uri` (see the module). Never raises for what is in the
    bucket; the verdict's `artifact` was a temporary file, gone when this returns."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client = s3 or boto3.client("s3")
        with tempfile.TemporaryDirectory(prefix="signoff-verify-") as temporary:
            folder = download(client, uri, Path(temporary))
            return verify(folder, keyring, revoked=revoked, expected_model=expected_model,
                          expected_version=expected_version)
    except (ValueError, ClientError, BotoCoreError) as exc:  # tree's ArtifactError is a ValueError
        return Verdict(False, f"cannot read {uri}: {' '.join(str(exc).split())}")
