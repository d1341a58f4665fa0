"""Artifacts are read only from allowed roots, whatever the URI tries."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from shared.sources import ArtifactError, local, policy


@pytest.fixture
def roots(tmp_path) -> tuple[Path, ...]:
    root = tmp_path / "artifacts"
    root.mkdir()
    (root / "model.onnx").write_bytes(b"model")
    (tmp_path / "secret.txt").write_text("secret")
    return (root,)


def test_file_inside_a_root_resolves(roots):
    path = roots[0] / "model.onnx"
    assert policy.resolve(path.as_uri(), roots) == path.resolve()


def test_localhost_and_percent_encoding_are_understood(roots):
    path = roots[0] / "my model.onnx"
    path.write_bytes(b"x")
    assert policy.resolve(f"file://localhost{path.as_uri()[7:]}", roots) == path.resolve()


def test_outside_the_roots_is_refused(roots, tmp_path):
    with pytest.raises(ArtifactError, match="outside the allowed roots"):
        policy.resolve((tmp_path / "secret.txt").as_uri(), roots)


def test_no_roots_configured_refuses_everything(roots):
    with pytest.raises(ArtifactError, match=r"\(none configured\)"):
        policy.resolve((roots[0] / "model.onnx").as_uri(), ())


def test_dotdot_traversal_is_refused(roots):
    with pytest.raises(ArtifactError, match="outside the allowed roots"):
        policy.resolve(f"file://{roots[0]}/../secret.txt", roots)


def test_encoded_dotdot_traversal_is_refused(roots):
    with pytest.raises(ArtifactError, match="outside the allowed roots"):
        policy.resolve(f"file://{roots[0]}/%2e%2e/secret.txt", roots)


def test_sibling_with_a_common_prefix_is_refused(roots, tmp_path):
    sibling = tmp_path / "artifacts-evil"
    sibling.mkdir()
    (sibling / "m.onnx").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="outside the allowed roots"):
        policy.resolve((sibling / "m.onnx").as_uri(), roots)


def test_symlink_pointing_outside_is_refused(roots, tmp_path):
    link = roots[0] / "innocent.onnx"
    link.symlink_to(tmp_path / "secret.txt")
    with pytest.raises(ArtifactError, match="outside the allowed roots"):
        policy.resolve(link.as_uri(), roots)


@pytest.mark.parametrize("uri", ["http://example.com/m.onnx", "s3://bucket/m.onnx", "/abs/m.onnx"])
def test_non_file_scheme_is_refused(roots, uri):
    with pytest.raises(ArtifactError, match="only file:// URIs are supported"):
        policy.resolve(uri, roots)


def test_remote_host_is_refused(roots):
    with pytest.raises(ArtifactError, match="must be local"):
        policy.resolve("file://other-host/models/m.onnx", roots)


def test_relative_path_is_refused(roots):
    with pytest.raises(ArtifactError, match="must be absolute"):
        policy.resolve("file:relative/m.onnx", roots)


def test_missing_file_is_refused(roots):
    with pytest.raises(ArtifactError, match="no such file"):
        policy.resolve((roots[0] / "absent.onnx").as_uri(), roots)


def test_a_directory_below_a_root_is_a_folder_artifact_but_a_root_itself_is_not(roots):
    (roots[0] / "dir").mkdir()
    assert policy.resolve((roots[0] / "dir").as_uri(), roots) == (roots[0] / "dir").resolve()
    with pytest.raises(ArtifactError, match="is an allowed root itself"):
        policy.resolve(roots[0].as_uri(), roots)


async def test_sha256_of_streams_the_file(roots, monkeypatch):
    monkeypatch.setattr(local, "CHUNK", 2)  # several chunks
    assert await local.sha256_of(roots[0] / "model.onnx") == hashlib.sha256(b"model").hexdigest()


def test_copy_verified_refuses_an_existing_destination(roots, tmp_path):
    dest = tmp_path / "dest"
    dest.write_bytes(b"already here")
    with pytest.raises(FileExistsError):
        local.copy_verified(roots[0] / "model.onnx", dest, hashlib.sha256(b"model").hexdigest())
    assert dest.read_bytes() == b"already here"


def test_copy_verified_refuses_changed_bytes(roots, tmp_path):
    with pytest.raises(ArtifactError, match="the artifact changed since it was checked"):
        local.copy_verified(roots[0] / "model.onnx", tmp_path / "dest", hashlib.sha256(b"other").hexdigest())


def test_sha256_file_is_the_digest_of_the_bytes(roots):
    assert local.sha256_file(roots[0] / "model.onnx") == hashlib.sha256(b"model").hexdigest()
