"""The `s3` artifact source against a real S3 API server (moto in server mode, the `s3` fixture):
an object, a folder, the allow-list, bad keys, a missing object, the size caps, and credentials
from the standard AWS chain."""

from __future__ import annotations

import hashlib
import uuid

import pytest

import shared.sources.s3 as s3_source
from shared.sources import ArtifactError, ArtifactSource, S3Config, tree
from tests.s3_server import ACCESS_KEY, REGION, SECRET_KEY


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


FOLDER = {"MLmodel": b"flavors: {}\n", "model.pkl": b"\x80\x04N.", "data/weights.bin": b"\x01" * 3000}


@pytest.fixture
def aws_env(s3, monkeypatch):
    """The standard AWS variables (the chain boto3 reads); nothing about credentials in Signoff's settings."""
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3_source.forget_clients()  # clients are cached per configuration: read the chain anew


@pytest.fixture
def bucket(s3, aws_env) -> str:
    name = f"models-{uuid.uuid4().hex[:12]}"
    client = s3.client()
    client.create_bucket(Bucket=name)
    client.put_object(Bucket=name, Key="teams/risk/churn.onnx", Body=b"onnx weights")
    for rel, data in FOLDER.items():
        client.put_object(Bucket=name, Key=f"teams/risk/churn-model/{rel}", Body=data)
    return name


@pytest.fixture
def source(s3, bucket, tmp_path) -> ArtifactSource:
    return ArtifactSource(roots=(), s3_prefixes=(f"s3://{bucket}/teams/",), workdir=tmp_path / "downloads",
                          s3=S3Config(endpoint_url=s3.endpoint_url, region=REGION), max_bytes=10_000)


def folder_digest() -> str:
    return tree.digest(tree.TreeFile(rel, sha(data), len(data)) for rel, data in FOLDER.items())


async def test_one_object_is_streamed_hashed_and_downloaded(source, bucket):
    uri = f"s3://{bucket}/teams/risk/churn.onnx"
    assert tuple(await source.digest(uri)) == (sha(b"onnx weights"), 12, 1, False)
    assert not source.workdir.exists() or list(source.workdir.iterdir()) == []  # the digest keeps nothing
    fetched = await source.fetch(uri)
    assert (fetched.sha256, fetched.size, fetched.temporary, fetched.folder) == (sha(b"onnx weights"), 12, True, False)
    assert fetched.path.read_bytes() == b"onnx weights" and fetched.path.parent == source.workdir
    fetched.cleanup()
    assert list(source.workdir.iterdir()) == []


@pytest.mark.parametrize("suffix", ["/", ""])  # with the slash, and as MLflow names it, without
async def test_a_prefix_is_a_folder_with_the_tree_digest(source, bucket, s3, suffix):
    s3.client().put_object(Bucket=bucket, Key="teams/risk/churn-model/", Body=b"")  # a console's folder marker
    uri = f"s3://{bucket}/teams/risk/churn-model{suffix}"
    assert tuple(await source.digest(uri)) == (folder_digest(), sum(map(len, FOLDER.values())), 3, True)
    fetched = await source.fetch(uri)
    assert fetched.folder and fetched.sha256 == folder_digest() and fetched.files == 3
    assert {p.relative_to(fetched.path).as_posix(): p.read_bytes()
            for p in fetched.path.rglob("*") if p.is_file()} == FOLDER
    fetched.cleanup()
    assert list(source.workdir.iterdir()) == []


@pytest.mark.parametrize("uri, message", [
    ("s3://{bucket}/other/churn.onnx", "not under an allowed S3 prefix"),
    ("s3://{bucket}/teams-evil/churn.onnx", "not under an allowed S3 prefix"),
    ("s3://elsewhere-bucket/teams/churn.onnx", "not under an allowed S3 prefix"),
    ("s3://{bucket}/teams/../secrets/key", r"'\.\.' segment"),
    ("s3://{bucket}/teams//churn.onnx", "empty"),
    ("s3://{bucket}/teams/a\\b", "backslash"),
    ("s3://{bucket}/", "whole bucket"),
    ("s3://Bad_Bucket/teams/m", "not a valid S3 bucket name"),
])
async def test_refused_before_any_request(source, bucket, uri, message, monkeypatch):
    def no_client(config):
        raise AssertionError("no request may be made for a refused URI")

    monkeypatch.setattr(s3_source, "client", no_client)
    with pytest.raises(ArtifactError, match=message):
        await source.fetch(uri.format(bucket=bucket))
    with pytest.raises(ArtifactError, match=message):
        await source.digest(uri.format(bucket=bucket))


async def test_nothing_is_allowed_by_default(s3, bucket, tmp_path):
    source = ArtifactSource(roots=(), workdir=tmp_path, s3=S3Config(endpoint_url=s3.endpoint_url))
    with pytest.raises(ArtifactError, match=r"\(none configured\)"):
        await source.fetch(f"s3://{bucket}/teams/risk/churn.onnx")


async def test_a_missing_object_or_bucket_is_a_clear_error(source, bucket, s3, tmp_path):
    with pytest.raises(ArtifactError, match="no such object or folder") as missing:
        await source.fetch(f"s3://{bucket}/teams/risk/absent.onnx")
    assert not missing.value.transient
    with pytest.raises(ArtifactError, match="no such folder"):
        await source.digest(f"s3://{bucket}/teams/risk/absent/")
    other = ArtifactSource(roots=(), s3_prefixes=("s3://no-such-bucket-x/",), workdir=tmp_path,
                           s3=S3Config(endpoint_url=s3.endpoint_url, region=REGION))
    with pytest.raises(ArtifactError, match="no such bucket"):
        await other.fetch("s3://no-such-bucket-x/m.onnx")
    assert list(source.workdir.iterdir()) == []


async def test_over_the_size_cap_is_refused_before_download_and_nothing_is_left(source, bucket):
    with pytest.raises(ArtifactError, match="is 12 bytes, over the limit of 11 bytes"):
        await source.fetch(f"s3://{bucket}/teams/risk/churn.onnx", max_bytes=11)
    with pytest.raises(ArtifactError, match="in 3 objects, over the limit of 3000 bytes"):
        await source.fetch(f"s3://{bucket}/teams/risk/churn-model/", max_bytes=3000)
    assert list(source.workdir.iterdir()) == []


async def test_a_folder_with_too_many_files_or_an_ambiguous_name_is_refused(source, bucket, s3):
    few = ArtifactSource(roots=(), s3_prefixes=source.s3_prefixes, workdir=source.workdir, s3=source.s3,
                         max_files=2)
    with pytest.raises(ArtifactError, match="more than 2 files"):
        await few.digest(f"s3://{bucket}/teams/risk/churn-model/")
    s3.client().put_object(Bucket=bucket, Key="teams/risk/odd/a\\b", Body=b"x")  # sha256sum would escape it
    with pytest.raises(ArtifactError, match="backslash"):
        await source.digest(f"s3://{bucket}/teams/risk/odd/")


async def test_credentials_come_from_the_aws_chain(source, bucket, monkeypatch):
    uri = f"s3://{bucket}/teams/risk/churn.onnx"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    assert (await source.digest(uri)).sha256 == sha(b"onnx weights")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    s3_source.forget_clients()
    with pytest.raises(ArtifactError, match="no AWS credentials found; set AWS_ACCESS_KEY_ID"):
        await source.digest(uri)


async def test_an_unreachable_endpoint_is_transient(bucket, tmp_path):
    from signoff.devstack import free_port

    source = ArtifactSource(roots=(), s3_prefixes=(f"s3://{bucket}/",), workdir=tmp_path,
                            s3=S3Config(endpoint_url=f"http://127.0.0.1:{free_port()}", region=REGION,
                                        connect_timeout=1, max_attempts=1))
    with pytest.raises(ArtifactError, match="cannot reach S3") as refused:
        await source.digest(f"s3://{bucket}/teams/risk/churn.onnx")
    assert refused.value.transient


def test_signoff_digest_of_an_s3_folder_uses_the_aws_chain(bucket):
    from typer.testing import CliRunner

    from signoff.cli import app

    result = CliRunner().invoke(app, ["digest", f"s3://{bucket}/teams/risk/churn-model/"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == folder_digest()
    assert "tree digest of the folder: 3 file(s)" in result.stderr


def test_settings_refuse_a_bad_prefix_at_start_and_hold_no_credentials():
    from pydantic import ValidationError

    from services.validator.settings import ValidatorSettings

    with pytest.raises(ValidationError, match="'s3://Bad_Bucket/x' is not an s3://bucket/prefix/ location"):
        ValidatorSettings(artifact_s3_prefixes=("s3://Bad_Bucket/x",))
    fields = set(ValidatorSettings.model_fields)
    assert {"artifact_s3_prefixes", "s3_endpoint_url", "s3_region"} <= fields
    assert not any("secret" in f or "access_key" in f for f in fields if f.startswith("s3"))


async def test_a_cancelled_fetch_leaves_no_download(source, bucket, monkeypatch):
    import asyncio
    import threading
    import time

    started, finished = threading.Event(), threading.Event()
    original = s3_source._Read._fetch

    def fetch_then_signal(self, stop):
        started.set()
        try:
            return original(self, stop)
        finally:
            finished.set()

    monkeypatch.setattr(s3_source._Read, "_fetch", fetch_then_signal)
    task = asyncio.create_task(source.fetch(f"s3://{bucket}/teams/risk/churn-model/"))
    assert await asyncio.to_thread(started.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(finished.wait, 10)
    deadline = time.monotonic() + 5
    while any(source.workdir.iterdir()) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)  # the clean-up runs as the thread's done-callback, in the loop
    assert list(source.workdir.iterdir()) == []
