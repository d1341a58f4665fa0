"""`signoff verify` checks that the files are the attested release where they are served: an
approved release copied under another model's or version's name, a revoked release put back under
any name, and a FIFO or link where a file should be are refused (issue 12)."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.deployer.targets import _store_files as store_files
from shared import signing
from shared.attestation import ATTESTATION_FILE, REVOKED_FILE
from signoff import verify_files
from signoff.verify import Verdict, verify
from tests import keys
from tests.unit.test_attestation import WEIGHTS, install

ARTIFACT = "fraud-1.4.0.onnx"


@pytest.fixture(scope="module")
def keyring() -> signing.Keyring:
    return signing.load_trust(keys.keys().trust)


def verify_as_release(path: Path, keyring: signing.Keyring) -> Verdict:
    """verify as a platform serving the files as fraud-detector 1.4.0, whatever the folder is called."""
    return verify(path, keyring, expected_model="fraud-detector", expected_version="1.4.0")


def copy_to(folder: Path, dest: Path, drop: tuple[str, ...] = ()) -> Path:
    shutil.copytree(folder, dest)
    for name in drop:
        (dest / name).unlink()
    return dest


# --- the release the files are served as ------------------------------------------------------------

def test_an_approved_release_copied_as_another_model_or_version_is_refused(tmp_path, keyring):
    folder, _, _ = install(tmp_path)
    store = tmp_path / "store"
    other = copy_to(folder, store / "payments-scorer" / "7.0")
    for path in (other, other / ARTIFACT, other / ATTESTATION_FILE):
        verdict = verify(path, keyring)
        assert not verdict.ok and "would be served as payments-scorer 7.0, but the attestation is for " \
            "fraud-detector 1.4.0" in verdict.reason, verdict.reason
        assert "--model and --version" in verdict.reason
    newer = copy_to(folder, store / "fraud-detector" / "1.4.1")
    assert "served as fraud-detector 1.4.1" in verify(newer, keyring).reason
    assert verify(folder, keyring).ok


def test_the_release_a_platform_names_must_be_the_attested_one(tmp_path, keyring):
    folder, _, _ = install(tmp_path)
    elsewhere = copy_to(folder, tmp_path / "serving" / "slot-3")  # a platform's own layout
    assert not verify(elsewhere, keyring).ok
    named = verify_as_release(elsewhere, keyring)
    assert named.ok and named.artifact == (elsewhere / ARTIFACT).resolve()
    wrong = verify(folder, keyring, expected_model="payments-scorer", expected_version="7.0")
    assert not wrong.ok and "is for fraud-detector 1.4.0, not payments-scorer 7.0" in wrong.reason
    assert not verify(folder, keyring, expected_model="fraud-detector", expected_version="1.4.1").ok
    with pytest.raises(ValueError, match="go together"):
        verify(folder, keyring, expected_model="fraud-detector")


def test_a_link_is_served_under_its_own_name_and_the_verdict_names_the_real_file(tmp_path, keyring):
    folder, _, _ = install(tmp_path)
    store = tmp_path / "store"
    (store / "payments-scorer").mkdir()
    (store / "payments-scorer" / "7.0").symlink_to(folder)
    assert "served as payments-scorer 7.0" in verify(store / "payments-scorer" / "7.0", keyring).reason
    served = tmp_path / "serving"  # fraud-detector/1.4.0 -> a content-addressed folder
    blob = copy_to(folder, tmp_path / "blobs" / "sha-4402")
    (served / "fraud-detector").mkdir(parents=True)
    (served / "fraud-detector" / "1.4.0").symlink_to(blob)
    verdict = verify(served / "fraud-detector" / "1.4.0", keyring)
    assert verdict.ok and verdict.artifact == blob.resolve() / ARTIFACT  # load this, not the link


def test_dot_is_the_folder_it_names(tmp_path, keyring, monkeypatch):
    folder, _, _ = install(tmp_path)
    monkeypatch.chdir(folder)
    assert verify(Path("."), keyring).ok
    other = copy_to(folder, tmp_path / "store" / "payments-scorer" / "7.0")
    monkeypatch.chdir(other)
    assert "served as payments-scorer 7.0" in verify(Path("."), keyring).reason


# --- revoked releases, offline -----------------------------------------------------------------------

def test_a_revoked_release_put_back_under_any_name_is_refused_offline(tmp_path, keyring, monkeypatch):
    folder, _, _ = install(tmp_path)
    store = tmp_path / "store"
    kept = store_files.retire(store, "fraud-detector", "1.4.0", {"requested_by": "security", "reason": "PII"})
    assert kept is not None
    hotfix = copy_to(kept, store / "fraud-detector" / "1.4.0-hotfix", drop=(REVOKED_FILE,))
    verdict = verify_as_release(hotfix, keyring)
    assert not verdict.ok and f"the same release was retired into {kept}" in verdict.reason
    assert "marked in the model store by security: PII" in verdict.reason
    same = copy_to(kept, folder, drop=(REVOKED_FILE,))
    assert "the same release was retired" in verify(same, keyring).reason
    monkeypatch.chdir(same)
    assert "the same release was retired" in verify(Path("."), keyring).reason


def test_a_retired_artifact_approved_again_is_refused_by_its_bytes(tmp_path, keyring):
    install(tmp_path)
    store_files.retire(tmp_path / "store", "fraud-detector", "1.4.0")
    again, _, _ = install(tmp_path)  # the same bytes, a new submission and attestation
    verdict = verify(again, keyring)
    assert not verdict.ok and "the same artifact (same sha256) was retired" in verdict.reason


def test_a_new_release_of_a_retired_version_number_is_not_refused_by_its_name(tmp_path, keyring):
    install(tmp_path)
    store_files.retire(tmp_path / "store", "fraud-detector", "1.4.0")
    fixed, _, _ = install(tmp_path, weights=WEIGHTS + b"retrained")
    assert verify(fixed, keyring).ok


def test_more_retired_versions_than_verify_reads_offline_is_refused(tmp_path, keyring, monkeypatch):
    folder, _, _ = install(tmp_path)
    retired = tmp_path / "store" / ".revoked" / "fraud-detector"
    for n in range(3):
        (retired / f"0.{n}-abcd").mkdir(parents=True)
    monkeypatch.setattr(verify_files, "MAX_RETIRED", 2)
    verdict = verify(folder, keyring)
    assert not verdict.ok and "3 retired versions, more than the 2 verify reads offline: check with --online" \
        in verdict.reason


# --- what is read: regular files only, without blocking -----------------------------------------------

def bounded(fn, path: Path) -> Verdict:
    """`fn()` within 10 s, or fail; a FIFO opened for reading blocks until a writer comes."""
    out: list[Verdict] = []
    worker = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # let the blocked reader go
        pytest.fail(f"verify blocked on the FIFO {path}")
    return out[0]


@pytest.mark.parametrize(("name", "says"), [
    (ARTIFACT, f"{ARTIFACT} is not a regular file"),
    (ATTESTATION_FILE, f"{ATTESTATION_FILE} is not a regular file"),
    (REVOKED_FILE, "marked REVOKED in the model store"),  # a mark that cannot be read still denies
])
def test_a_fifo_where_a_file_should_be_is_refused_without_blocking(tmp_path, keyring, name, says):
    folder, _, _ = install(tmp_path)
    (folder / name).unlink(missing_ok=True)
    os.mkfifo(folder / name)
    verdict = bounded(lambda: verify(folder, keyring), folder / name)
    assert not verdict.ok and says in verdict.reason, verdict.reason


def test_a_linked_attestation_is_refused(tmp_path, keyring):
    folder, _, _ = install(tmp_path)
    real = tmp_path / "elsewhere.json"
    (folder / ATTESTATION_FILE).rename(real)
    (folder / ATTESTATION_FILE).symlink_to(real)
    verdict = verify(folder, keyring)
    assert not verdict.ok and "is a symbolic link: verify reads only the files themselves" in verdict.reason


# --- the command ----------------------------------------------------------------------------------------

def test_the_command_takes_the_release_a_platform_serves_the_files_as(tmp_path):
    from signoff.cli import app

    folder, _, _ = install(tmp_path)
    elsewhere = copy_to(folder, tmp_path / "serving" / "slot-3")
    runner = CliRunner()
    env = {"SIGNOFF_TRUSTED_KEYS": str(keys.keys().trust)}
    unnamed = runner.invoke(app, ["verify", str(elsewhere)], env=env)
    assert unnamed.exit_code == 1 and "name the release you serve these files as with --model and --version" \
        in " ".join(unnamed.output.split())
    named = runner.invoke(app, ["verify", str(elsewhere), "--model", "fraud-detector", "--version", "1.4.0"], env=env)
    assert named.exit_code == 0 and named.output.startswith("ok: fraud-detector 1.4.0 "), named.output
    wrong = runner.invoke(app, ["verify", str(folder), "--model", "payments-scorer", "--version", "7.0"], env=env)
    assert wrong.exit_code == 1 and "not payments-scorer 7.0" in wrong.output
    half = runner.invoke(app, ["verify", str(folder), "--model", "fraud-detector"], env=env)
    assert half.exit_code == 1 and "give --model and --version together" in half.output
