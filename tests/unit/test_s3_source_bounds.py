"""The `s3` source against a real S3 API server (moto, the `s3` fixture), where keys are not paths:
a key that is both an object and a folder is refused as ambiguous, an object that reads as a
folder's listing is refused (it would have that folder's digest), folder markers count toward the
listing's cap, and the listing and empty objects stop at the read's deadline. `signoff verify
s3://...` stops listing at the first page past its cap."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest

import shared.sources.s3 as s3_source
from shared.sources import ArtifactError, ArtifactSource, S3Config, tree
from signoff import verify_s3
from tests.s3_server import REGION

EVIL = b"\x80\x04cposix\nsystem\n."
LISTING = tree.listing([tree.TreeFile("model.pkl", hashlib.sha256(EVIL).hexdigest(), len(EVIL))])


@pytest.fixture
def bucket(s3, monkeypatch) -> str:
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3_source.forget_clients()
    name = f"models-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=name)
    return name


def source_of(s3, bucket: str, tmp_path, **fields: Any) -> ArtifactSource:
    return ArtifactSource(roots=(), s3_prefixes=(f"s3://{bucket}/teams/",), workdir=tmp_path / "downloads",
                          s3=S3Config(endpoint_url=s3.endpoint_url, region=REGION), **fields)


async def test_an_object_beside_a_folder_of_its_name_is_ambiguous(s3, bucket, tmp_path):
    """MLflow names a folder without its slash: `m` is the object while it exists, the folder `m/`
    once it is deleted. Checked as one and deployed as the other, so both together are refused."""
    client, source = s3.client(), source_of(s3, bucket, tmp_path)
    client.put_object(Bucket=bucket, Key="teams/risk/m", Body=b"onnx weights")
    client.put_object(Bucket=bucket, Key="teams/risk/m/model.pkl", Body=EVIL)
    for read in (source.digest, source.fetch):
        with pytest.raises(ArtifactError, match="is ambiguous: both an object of that key and objects under"):
            await read(f"s3://{bucket}/teams/risk/m")
    assert (await source.digest(f"s3://{bucket}/teams/risk/m/")).folder  # with its slash: the folder
    client.delete_object(Bucket=bucket, Key="teams/risk/m/model.pkl")
    assert (await source.digest(f"s3://{bucket}/teams/risk/m")).sha256 == hashlib.sha256(b"onnx weights").hexdigest()


async def test_an_object_that_reads_as_a_listing_is_refused_and_nothing_is_kept(s3, bucket, tmp_path):
    s3.client().put_object(Bucket=bucket, Key="teams/risk/listing", Body=LISTING)
    source = source_of(s3, bucket, tmp_path)
    for read in (source.digest, source.fetch):
        with pytest.raises(ArtifactError, match="reads as a folder's tree listing"):
            await read(f"s3://{bucket}/teams/risk/listing")
    assert list(source.workdir.iterdir()) == []


async def test_a_key_that_is_a_file_and_a_folder_is_refused_before_any_download(s3, bucket, tmp_path):
    client, source = s3.client(), source_of(s3, bucket, tmp_path)
    client.put_object(Bucket=bucket, Key="teams/n/x", Body=b"1")
    client.put_object(Bucket=bucket, Key="teams/n/x/y", Body=b"2")
    gets: list[int] = []
    s3_source.client(source.s3).meta.events.register("before-call.s3.GetObject", lambda **_: gets.append(1))
    for read in (source.digest, source.fetch):
        with pytest.raises(ArtifactError, match="holds both a file 'x' and files under 'x/'"):
            await read(f"s3://{bucket}/teams/n/")
    assert gets == [] and list(source.workdir.iterdir()) == []


async def test_folder_markers_count_toward_the_listing_cap(s3, bucket, tmp_path):
    client = s3.client()
    for i in range(7):  # markers only: no file, but each costs the listing a key
        client.put_object(Bucket=bucket, Key=f"teams/m/d{i}/", Body=b"")
    client.put_object(Bucket=bucket, Key="teams/m/z.bin", Body=b"weights")
    calls: list[int] = []
    source = source_of(s3, bucket, tmp_path, max_files=3)
    s3_source.client(source.s3).meta.events.register("before-call.s3.ListObjectsV2", lambda **_: calls.append(1))
    with pytest.raises(ArtifactError, match="lists more than 6 keys"):
        await source.digest(f"s3://{bucket}/teams/m/")
    assert len(calls) <= 2  # pages of at most 7 keys: stopped at the page past the cap
    assert (await source_of(s3, bucket, tmp_path, max_files=4).digest(f"s3://{bucket}/teams/m/")).files == 1


async def test_the_listing_and_an_empty_object_stop_at_the_deadline(s3, bucket, tmp_path):
    client = s3.client()
    for i in range(3):  # markers only: the listing's own clock, since no object is read after it
        client.put_object(Bucket=bucket, Key=f"teams/m/d{i}/", Body=b"")
    client.put_object(Bucket=bucket, Key="teams/empty.bin", Body=b"")
    late = source_of(s3, bucket, tmp_path, timeout=1e-9)
    with pytest.raises(ArtifactError, match="did not finish within") as listing:
        await late.digest(f"s3://{bucket}/teams/m/")
    with pytest.raises(ArtifactError, match="did not finish within") as empty:
        await late.digest(f"s3://{bucket}/teams/empty.bin")  # no chunk to look at the clock
    assert listing.value.transient and empty.value.transient
    assert (await source_of(s3, bucket, tmp_path).digest(f"s3://{bucket}/teams/empty.bin")).size == 0


class _Pages:
    """A paginator over a version folder of many pages, counting the pages read."""

    def __init__(self, pages: int, per_page: int = 1000, keys: tuple[str, ...] = ()) -> None:
        self.pages, self.per_page, self.read, self.keys = pages, per_page, 0, keys

    def get_paginator(self, operation: str) -> _Pages:
        return self

    def paginate(self, **kwargs: Any) -> Any:
        for page in range(self.pages):
            self.read += 1
            keys = self.keys or [f"m/1/x/{page}-{i}" for i in range(self.per_page)]
            yield {"Contents": [{"Key": key, "Size": 1} for key in keys]}

    def get_object(self, **kwargs: Any) -> Any:
        raise AssertionError("nothing is downloaded from a listing over the cap")


def test_verify_refuses_a_version_folder_with_a_key_that_is_a_file_and_a_folder(tmp_path):
    pages = _Pages(1, keys=("m/1/x", "m/1/x/y"))
    with pytest.raises(ArtifactError, match="holds both a file 'x'"):
        verify_s3.download(pages, "s3://serving/m/1/", tmp_path)


def test_verify_stops_listing_at_the_first_page_past_its_cap(tmp_path):
    pages = _Pages(50)
    with pytest.raises(ArtifactError, match="more than 1500 files"):
        verify_s3.download(pages, "s3://serving/m/1/", tmp_path, max_files=1500)
    assert pages.read == 2
    big = _Pages(3, per_page=2)
    with pytest.raises(ValueError, match="holds more than 3 bytes"):
        verify_s3.download(big, "s3://serving/m/1/", tmp_path / "b", max_bytes=3)
    assert big.read == 2
