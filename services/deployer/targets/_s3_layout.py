"""Where the s3 target puts things, and whether it may: pure functions of names, no I/O.

    s3://<bucket>/<prefix>/<model>/<version>/<name>              the approved bytes: a file, or a folder
                                                                 `<name>/...` holding the folder's files
                                             manifest.json       what was deployed (written last of the version)
                                             attestation.intoto.json
                                             REVOKED              once retired (who and why)
    s3://<bucket>/<prefix>/<model>/PRODUCTION                     the pointer (JSON), written after the version
    s3://<bucket>/<prefix>/<model>/traffic.json                   the split while a canary bakes

The layout is the model store's (`_store_files`), the one TensorFlow Serving, Triton and KServe's
storage initializer read from a bucket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.attestation import ATTESTATION_FILE, MANIFEST_FILE, REVOKED_FILE
from shared.values import RESERVED_VERSIONS

POINTER = "PRODUCTION"
TRAFFIC = "traffic.json"
RESERVED = (MANIFEST_FILE, ATTESTATION_FILE, REVOKED_FILE)  # a version's own objects

BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")  # S3's bucket naming rules, in short
SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,127}")  # no '..', no hidden segment, no '/'


def bucket_problem(bucket: str) -> str | None:
    if not BUCKET.fullmatch(bucket) or ".." in bucket:
        return f"bucket {bucket!r} is not a valid S3 bucket name (3-63 of a-z 0-9 . -)"
    return None


def prefix_problem(prefix: str) -> str | None:
    """Why `prefix` (`a/b`, no leading or trailing '/'; '' for the bucket's top) cannot hold models."""
    if prefix and not all(SEGMENT.fullmatch(s) for s in prefix.split("/")):
        return (f"prefix {prefix!r} must be '/'-separated segments of letters, digits and ._+=- , each "
                "starting with a letter or digit (no '..', no empty segment, no leading or trailing '/')")
    return None


@dataclass(frozen=True)
class Place:
    """A bucket and a key prefix (`''`: the bucket's top; else segments joined by '/')."""

    bucket: str
    prefix: str

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(s for s in self.prefix.split("/") if s)

    def key(self, *parts: str) -> str:
        return "/".join((*self.segments, *parts))

    def uri(self, *parts: str) -> str:
        return f"s3://{self.bucket}/{self.key(*parts)}"

    def is_within(self, allowed: Place) -> bool:
        """By whole key segments: `s3://serving/models/` allows `models/prod`, not `models-evil`."""
        return self.bucket == allowed.bucket and self.segments[:len(allowed.segments)] == allowed.segments


def parse_allowed(text: str) -> Place:
    """An allowed target prefix (`s3://bucket/` or `s3://bucket/a/b/`); ValueError says what is wrong."""
    if not text.startswith("s3://"):
        raise ValueError(f"allowed S3 target prefix {text!r} does not start with s3://")
    bucket, _, prefix = text[len("s3://"):].partition("/")
    problem = bucket_problem(bucket) or prefix_problem(prefix.strip("/"))
    if problem:
        raise ValueError(f"allowed S3 target prefix {text!r}: {problem}")
    return Place(bucket, prefix.strip("/"))


def refusal(place: Place, allowed: tuple[str, ...]) -> str | None:
    """Why the deployer may not write to `place` (not under DEPLOYER_S3_TARGET_PREFIXES), or None."""
    checked = []
    for text in allowed:
        try:
            checked.append(parse_allowed(text))
        except ValueError as exc:
            return f"{exc}; fix DEPLOYER_S3_TARGET_PREFIXES"
    if any(place.is_within(a) for a in checked):
        return None
    return (f"s3 target {place.uri()} is not under an allowed prefix ({', '.join(allowed) or 'none configured'}); "
            "deploy under one of them or add it to DEPLOYER_S3_TARGET_PREFIXES")


def _segment(what: str, name: str) -> str:
    # Model and version are single safe segments by the contract; checked again here, since a key
    # is a path to every reader of the bucket.
    if not SEGMENT.fullmatch(name):
        raise ValueError(f"{what} {name!r} is not a single safe key segment")
    return name


def version_key(place: Place, model: str, version: str, *parts: str) -> str:
    """A key in the version's folder (`parts`: a file's path in it; none: the folder itself)."""
    if version.casefold() in RESERVED_VERSIONS:  # the pointer's key would be a version's folder
        raise ValueError(f"version {version!r} is a name the model's folder keeps for its own objects")
    return place.key(_segment("model", model), _segment("version", version), *parts)


def model_key(place: Place, model: str, name: str) -> str:
    """A key beside the model's versions: POINTER or TRAFFIC."""
    return place.key(_segment("model", model), name)
