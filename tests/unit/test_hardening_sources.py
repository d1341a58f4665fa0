"""Hard links do not escape an artifact root (issue 16, item 1), written as the attack: a hard link
inside the root to a file outside it. Symbolic links were refused already (they resolve outside);
a hard link resolves inside, so a file is read only when it has a single link, unless the setting
allows more. The same rule holds for the validator's and the deployer's sources."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from services.deployer.settings import DeployerSettings
from services.validator.settings import ValidatorSettings
from shared.sources import ArtifactError, ArtifactSource
from shared.sources import local as local_source

SECRET = b"-----BEGIN OPENSSH PRIVATE KEY----- not for the validator"
MODEL = b"onnx weights"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "artifacts"
    root.mkdir()
    (root / "model.onnx").write_bytes(MODEL)
    return root


@pytest.fixture
def linked(tmp_path: Path, root: Path) -> Path:
    """The attack: a file outside the root, and a hard link to it inside the root."""
    outside = tmp_path / "elsewhere" / "id_ed25519"
    outside.parent.mkdir()
    outside.write_bytes(SECRET)
    link = root / "model-1.5.0.onnx"
    os.link(outside, link)
    return link


def source_of(settings_cls: type, root: Path, tmp_path: Path, **fields: object) -> ArtifactSource:
    settings = settings_cls(artifact_roots=(root,), **fields)
    return ArtifactSource.from_settings(settings, tmp_path / "downloads")


@pytest.mark.parametrize("settings_cls", [ValidatorSettings, DeployerSettings])
async def test_a_hard_link_inside_the_root_to_a_file_outside_is_refused(settings_cls, root, linked, tmp_path):
    source = source_of(settings_cls, root, tmp_path)
    with pytest.raises(ArtifactError, match=r"has 2 hard links: a hard link can bring a file from outside the "
                                            r"allowed roots inside them.*copy the artifact into the root"):
        await source.fetch(linked.as_uri())


@pytest.mark.parametrize("settings_cls", [ValidatorSettings, DeployerSettings])
async def test_a_well_formed_artifact_is_still_read(settings_cls, root, linked, tmp_path):
    fetched = await source_of(settings_cls, root, tmp_path).fetch((root / "model.onnx").as_uri())
    assert fetched.sha256 == hashlib.sha256(MODEL).hexdigest() and fetched.size == len(MODEL)


@pytest.mark.parametrize("settings_cls", [ValidatorSettings, DeployerSettings])
async def test_hard_links_are_read_when_the_setting_allows_them(settings_cls, root, linked, tmp_path):
    source = source_of(settings_cls, root, tmp_path, artifact_allow_hard_links=True)
    assert source.allow_hard_links
    assert (await source.fetch(linked.as_uri())).sha256 == hashlib.sha256(SECRET).hexdigest()


def test_the_setting_is_off_unless_set_and_read_from_each_service_prefix(monkeypatch):
    assert not ValidatorSettings().artifact_allow_hard_links and not DeployerSettings().artifact_allow_hard_links
    monkeypatch.setenv("DEPLOYER_ARTIFACT_ALLOW_HARD_LINKS", "true")
    assert DeployerSettings().artifact_allow_hard_links and not ValidatorSettings().artifact_allow_hard_links


def test_the_link_count_is_checked_on_the_file_that_is_read(root, linked):
    """The file is opened once; a symbolic link put in place of the resolved path is not followed
    (O_NOFOLLOW), and the checks are made on what was opened, not on a second look at the path."""
    with pytest.raises(ArtifactError, match="has 2 hard links"):
        local_source._hash_capped(linked, linked.as_uri(), 2**20)
    swapped = root / "swapped.onnx"
    swapped.symlink_to(linked)  # as if replaced between resolve() and the read
    with pytest.raises(ArtifactError, match="cannot be read"):
        local_source._hash_capped(swapped, swapped.as_uri(), 2**20)


def test_a_fifo_is_refused_without_blocking(root):
    fifo = root / "model.fifo"
    os.mkfifo(fifo)
    with pytest.raises(ArtifactError, match="is not a regular file"):
        local_source._hash_capped(fifo, fifo.as_uri(), 2**20)
