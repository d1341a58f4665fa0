"""A version may not take a name the model's folder keeps for the deployer's own files: a version
`PRODUCTION` would be a folder where the pointer file goes (in the model store, renaming the
pointer into place fails; in a bucket, the pointer object and the version's folder share a key).
Refused by the contract, in any case (a store may sit on a case-insensitive disk), and again by
both layouts."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from services.deployer.targets import _s3_layout as layout
from services.deployer.targets import _store_files as files
from shared.sources import ArtifactError
from shared.values import RESERVED_VERSIONS
from tests.unit import factories as f

NAMES = ["PRODUCTION", "production", "traffic.json", "TRAFFIC.JSON", "REVOKED", "manifest.json",
         "attestation.intoto.json", "Production"]


@pytest.mark.parametrize("version", NAMES)
def test_the_contract_refuses_a_version_named_like_the_stores_own_files(version):
    with pytest.raises(ValidationError, match="a name the model store keeps for its own files"):
        f.candidate(version=version)


@pytest.mark.parametrize("version", ["1.4.0", "PRODUCTION2", "production-1", "traffic", "REVOKED.1"])
def test_versions_that_merely_resemble_them_are_fine(version):
    assert f.candidate(version=version).version == version


def test_every_name_the_layouts_keep_beside_versions_is_reserved():
    kept = {files.POINTER, files.TRAFFIC, *files.RESERVED, layout.POINTER, layout.TRAFFIC, *layout.RESERVED}
    assert {name.casefold() for name in kept} <= RESERVED_VERSIONS


@pytest.mark.parametrize("version", ["PRODUCTION", "traffic.json"])
def test_the_layouts_refuse_them_too(tmp_path, version):
    candidate = f.candidate().model_copy(update={"version": version})  # not validated: as if it got past the contract
    with pytest.raises(ArtifactError, match="keeps for its own files"):
        files.version_dir(tmp_path, candidate)
    (tmp_path / "fraud-detector" / version).mkdir(parents=True)  # installed before the name was refused
    (tmp_path / "fraud-detector" / version / files.MANIFEST).write_text("{}")
    with pytest.raises(ArtifactError, match="keeps for its own files"):
        files.set_production(tmp_path, "fraud-detector", version)
    with pytest.raises(ArtifactError, match="keeps for its own files"):
        files.retire(tmp_path, "fraud-detector", version)
    with pytest.raises(ValueError, match="keeps for its own objects"):
        layout.version_key(layout.Place("serving", "models"), "fraud-detector", version)


def test_the_pointer_still_works_beside_a_normal_version(tmp_path):
    art = tmp_path / "m.onnx"
    art.write_bytes(b"x")
    candidate = f.candidate(version="2", artifact_uri=art.as_uri(), artifact_sha256=hashlib.sha256(b"x").hexdigest())
    store = tmp_path / "store"
    store.mkdir()
    files.install(store, candidate, art, {"artifact_sha256": candidate.artifact_sha256}, "m.onnx")
    files.set_production(store, candidate.model, "2")
    assert files.production(store, candidate.model) == "2"
