"""The model store with folder artifacts: installed as `<version>/<name>/` beside the manifest, the
copy's tree digest checked; a changed folder leaves nothing; a folder URI names the folder."""

from __future__ import annotations

import hashlib

import pytest

from services.deployer.targets import _store_files as target
from shared.sources import ArtifactError
from shared.sources.local import hash_tree
from tests.unit import factories as f

FILES = {"MLmodel": b"flavors: {}\n", "data/model.safetensors": b"\x00" * 64, "conda.yaml": b"name: m\n"}


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "artifacts" / "churn-model"
    for rel, data in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def test_a_folder_is_installed_as_a_folder_beside_the_manifest(tmp_path, folder):
    digest = hash_tree(folder, folder.as_uri(), 10**6)[0]
    cand = f.candidate(artifact_uri=folder.as_uri(), artifact_sha256=digest)
    manifest = cand.model_dump()
    dest = target.install(tmp_path / "store", cand, folder, manifest, "churn-model")
    assert sorted(p.name for p in dest.iterdir()) == ["churn-model", "manifest.json"]
    assert {p.relative_to(dest / "churn-model").as_posix(): p.read_bytes()
            for p in (dest / "churn-model").rglob("*") if p.is_file()} == FILES
    assert target.install(tmp_path / "store", cand, folder, manifest, "churn-model") == dest  # idempotent


def test_a_folder_that_changed_is_refused_and_leaves_nothing(tmp_path, folder):
    digest = hash_tree(folder, folder.as_uri(), 10**6)[0]
    (folder / "extra.pkl").write_bytes(b"\x80\x04N.")
    cand = f.candidate(artifact_uri=folder.as_uri(), artifact_sha256=digest)
    with pytest.raises(ArtifactError, match="changed since it was checked"):
        target.install(tmp_path / "store", cand, folder, {}, "churn-model")
    assert not target.version_dir(tmp_path / "store", cand).exists()
    assert list((tmp_path / "store" / target.STAGING).iterdir()) == []


@pytest.mark.parametrize("uri, name", [
    ("s3://models/teams/churn-model/", "churn-model"), ("s3://models/teams/churn-model", "churn-model"),
    ("file:///data/artifacts/churn-model/", "churn-model"), ("s3://models/teams/m.onnx", "m.onnx"),
])
def test_a_folder_uri_names_the_folder(uri, name):
    assert target.uri_name(uri) == name


def test_the_single_file_digest_is_unchanged(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    cand = f.candidate(artifact_uri=(tmp_path / "m.onnx").as_uri(), artifact_sha256=hashlib.sha256(b"onnx").hexdigest())
    dest = target.install(tmp_path / "store", cand, tmp_path / "m.onnx", {})
    assert (dest / "m.onnx").read_bytes() == b"onnx"
