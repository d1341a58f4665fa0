"""The s3 target's objects: blocking boto3 calls, run off the event loop by the target (`s3.py`).

Every object is written with `x-amz-checksum-sha256` set to the sha256 the deployer expects (the
approved digest for a single-file artifact; each file's own, from a verified local copy, for a
folder), so a server that implements S3's checksums (AWS S3, MinIO, R2, Ceph) stores the object
only if the bytes it received are those; the digest it answers with is compared too. An object over
SINGLE_PUT_MAX bytes goes up in parts, each with its own checksum, after the whole file is hashed
again. The test server (moto 5.2.5) records the header without checking the bytes against it: what
guarantees the bytes there is the verified local copy they are read from (`_s3_upload.staged`).

A version's `manifest.json` is written last and only if absent (`If-None-Match: *`), so a version
is immutable on the server too; the pointer is written after the version is complete.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from services.deployer.settings import DeployerSettings
from services.deployer.targets._s3_layout import MANIFEST_FILE, Place
from shared.sources import ArtifactError

SINGLE_PUT_MAX = 5 * 2**30  # S3's limit for one PutObject
PART = 64 * 2**20  # bytes per part above it (at most 10,000 parts: 625 GiB, beyond any artifact cap)
MAX_JSON = 1 * 2**20  # a manifest, pointer or mark read back is small; a bigger one is not ours
TRANSIENT_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                             "RequestLimitExceeded", "InternalError", "ServiceUnavailable", "OperationAborted"})


def client(settings: DeployerSettings) -> Any:
    """An S3 client: endpoint, region and timeouts from the DEPLOYER_S3_* settings, credentials from
    the standard AWS chain (environment, profile, role), never from Signoff's settings."""
    config = Config(connect_timeout=settings.s3_connect_timeout, read_timeout=settings.s3_read_timeout,
                    retries={"max_attempts": settings.s3_max_attempts, "mode": "standard"})
    return boto3.session.Session().client("s3", endpoint_url=settings.s3_endpoint_url,
                                          region_name=settings.s3_region, config=config)


def classify(exc: Exception) -> tuple[str, bool]:
    """What went wrong, said for a person, and whether another try may help."""
    if isinstance(exc, NoCredentialsError):
        return ("no AWS credentials found; give the deployer credentials through the standard AWS chain "
                "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance/pod role)", False)
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        text = f"S3 answered {code or status}: {error.get('Message', '')}".rstrip(": ")
        if code in ("BadDigest", "XAmzContentSHA256Mismatch", "InvalidDigest"):
            return f"{text}: the bytes S3 received are not the approved ones; nothing was kept", False
        if code == "NoSuchBucket":
            return f"{text}: create the bucket, or deploy to one that exists", False
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return f"{text}: the deployer's AWS identity may not write there; grant it s3:PutObject, " \
                   "s3:GetObject, s3:DeleteObject and s3:ListBucket on the prefix", False
        return text, code in TRANSIENT_CODES or status >= 500 or status == 429
    if isinstance(exc, BotoCoreError):  # connection refused or reset, timeouts: the network's
        return f"S3: {type(exc).__name__}: {exc}", True
    raise TypeError(exc)


def checksum(sha256_hex: str) -> str:
    """S3's form of a sha256: base64 of the 32 bytes."""
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode()


def put_bytes(s3: Any, bucket: str, key: str, data: bytes, *, only_new: bool = False) -> bool:
    """Write a small object, checksummed; `only_new`: only if absent (False when it was there)."""
    extra = {"IfNoneMatch": "*"} if only_new else {}
    try:
        answer = s3.put_object(Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256",
                               ChecksumSHA256=checksum(hashlib.sha256(data).hexdigest()), **extra)
    except ClientError as exc:
        if only_new and exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
            return False
        raise
    _compare(bucket, key, answer, hashlib.sha256(data).hexdigest())
    return True


def put_file(s3: Any, bucket: str, key: str, path: Any, sha256_hex: str, size: int) -> None:
    """Upload the local file `path`, whose sha256 must be `sha256_hex`, so S3 checks it (see the module)."""
    if size <= SINGLE_PUT_MAX:
        with open(path, "rb") as body:
            answer = s3.put_object(Bucket=bucket, Key=key, Body=body, ChecksumAlgorithm="SHA256",
                                   ChecksumSHA256=checksum(sha256_hex))
        _compare(bucket, key, answer, sha256_hex)
        return
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256")["UploadId"]
    try:
        whole, parts = hashlib.sha256(), list[dict[str, Any]]()
        with open(path, "rb") as body:
            while chunk := body.read(PART):
                whole.update(chunk)
                part = checksum(hashlib.sha256(chunk).hexdigest())
                answer = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=len(parts) + 1,
                                        Body=chunk, ChecksumSHA256=part)
                parts.append({"PartNumber": len(parts) + 1, "ETag": answer["ETag"], "ChecksumSHA256": part})
        if whole.hexdigest() != sha256_hex:
            raise ArtifactError(f"s3://{bucket}/{key}: the bytes read for upload have digest {whole.hexdigest()}, "
                                f"expected {sha256_hex}: the artifact changed since it was checked")
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})
    except BaseException:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
        raise


def _compare(bucket: str, key: str, answer: dict, sha256_hex: str) -> None:
    # A server that implements checksums answers with the one it verified; another one says nothing.
    stored = answer.get("ChecksumSHA256")
    if stored is not None and stored != checksum(sha256_hex):
        raise ArtifactError(f"s3://{bucket}/{key}: S3 stored sha256 {stored!r}, expected {checksum(sha256_hex)!r}")


def read_json(s3: Any, bucket: str, key: str) -> dict | None:
    """The JSON object at `key`, or None when there is none."""
    try:
        answer = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    with answer["Body"] as body:
        data = body.read(MAX_JSON + 1)
    try:
        if len(data) > MAX_JSON:
            raise ValueError(f"over {MAX_JSON} bytes")
        value = json.loads(data)
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise ArtifactError(f"s3://{bucket}/{key} is not what the deployer writes ({exc}); "
                            "remove it or deploy elsewhere") from None
    return value


def keys_under(s3: Any, bucket: str, prefix: str) -> list[str]:
    found: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found += [item["Key"] for item in page.get("Contents", [])]
    return found


def delete(s3: Any, bucket: str, keys: list[str]) -> None:
    for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
        batch = [{"Key": k} for k in keys[start:start + 1000]]
        if batch:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})


def dumps(value: dict) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


def manifest_of(s3: Any, place: Place, version_folder: str) -> dict | None:
    return read_json(s3, place.bucket, f"{version_folder}/{MANIFEST_FILE}")

