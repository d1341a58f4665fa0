"""A small local artifact is hashed on the event loop (a worker thread costs more than the hash);
a larger one, or one that grew past the inline cap after its size was looked at, in a thread,
with the real size limit deciding."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from shared.sources import ArtifactError, ArtifactSource, local


@pytest.fixture
def threads(monkeypatch):
    """Counts the hashes handed to a worker thread."""
    handed = []
    real = local.asyncio.to_thread

    async def counted(fn, *args):
        handed.append(fn.__name__)
        return await real(fn, *args)

    monkeypatch.setattr(local.asyncio, "to_thread", counted)
    monkeypatch.setattr(local, "INLINE_BYTES", 1024)
    return handed


def source(root: Path, max_bytes: int = 10_000) -> ArtifactSource:
    return ArtifactSource(roots=(root,), workdir=root / "work", max_bytes=max_bytes)


async def test_a_small_file_is_hashed_on_the_loop(tmp_path, threads):
    data = os.urandom(1000)
    (tmp_path / "m.onnx").write_bytes(data)
    fetched = await local.fetch((tmp_path / "m.onnx").as_uri(), source(tmp_path), 10_000)
    assert (fetched.sha256, fetched.size, threads) == (hashlib.sha256(data).hexdigest(), 1000, [])


async def test_a_larger_file_is_hashed_in_a_thread(tmp_path, threads):
    data = os.urandom(5000)
    (tmp_path / "m.onnx").write_bytes(data)
    fetched = await local.fetch((tmp_path / "m.onnx").as_uri(), source(tmp_path), 10_000)
    assert (fetched.sha256, threads) == (hashlib.sha256(data).hexdigest(), ["_hash_capped"])


async def test_a_file_grown_after_its_size_was_looked_at_goes_to_a_thread_under_the_real_limit(
        tmp_path, threads, monkeypatch):
    path = tmp_path / "m.onnx"
    path.write_bytes(os.urandom(5000))
    real_stat = Path.stat

    def small(self, **kw):  # "10 bytes" when looked at
        r = real_stat(self, **kw)
        return r if self != path else os.stat_result(
            (r.st_mode, r.st_ino, r.st_dev, r.st_nlink, r.st_uid, r.st_gid, 10, r.st_atime, r.st_mtime, r.st_ctime))

    monkeypatch.setattr(Path, "stat", small)
    fetched = await local.fetch(path.as_uri(), source(tmp_path), 10_000)
    assert fetched.size == 5000 and threads == ["_hash_capped"]
    with pytest.raises(ArtifactError, match="over the limit of 3000 bytes"):
        await local.fetch(path.as_uri(), source(tmp_path, 3000), 3000)
