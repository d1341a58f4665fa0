"""Approval attestations (shared.attestation, services.deployer.attesting) and `signoff verify`:
a release installed as the deployer installs it verifies; a one-byte change to the model or to the
attestation, a key the trust file does not give the role deployer, and a revocation are refused."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from services.deployer import attesting, lifecycle
from services.deployer.lifecycle import Lifecycle
from services.deployer.rollout import Plan
from services.deployer.targets import _store_files as store_files
from shared import attestation, signing
from shared.attestation import ATTESTATION_FILE, AttestationError
from shared.events import (
    DeploymentRevoked,
    DeploymentSucceeded,
    ModelSubmitted,
    RevocationRequested,
    Vote,
    utcnow,
)
from shared.workflow.schema import DeployInputs
from signoff import verify as verifying
from signoff.verify import Revocations, verify
from tests import keys
from tests.unit import factories as f

WEIGHTS = b"onnx weights\x00" + bytes(range(256)) * 4
SHA = hashlib.sha256(WEIGHTS).hexdigest()
PLAN = Plan(inputs=DeployInputs(), workflow="default", digest="a" * 64)


@pytest.fixture(scope="module")
def keyring() -> signing.Keyring:
    return signing.load_trust(keys.keys().trust)


def approved_state(artifact: Path, sha: str = SHA) -> tuple[Lifecycle, ModelSubmitted]:
    """The lifecycle of a submission whose checks passed and which a person approved, answering
    the review.requested of `f.review_requested(cause)`."""
    cause = f.submitted(f.submission(f.candidate(artifact_uri=artifact.as_uri(), artifact_sha256=sha)))
    state = Lifecycle(submission_id=cause.submission_id)
    state, _ = lifecycle.advance(state, f.checks_passed(cause), PLAN)
    answer = f.decided(cause).model_copy(update={"causation_id": f.review_requested(cause).event_id})
    state, actions = lifecycle.advance(state, answer, PLAN)
    assert [type(a) for a in actions] == [lifecycle.Deploy]
    return state, cause


def envelope_for(state: Lifecycle, by: str = "deployer", location: str = "/store/fraud-detector/1.4.0"):
    assert state.approval is not None
    signer = keys.signer(by)
    return attesting.attest(state, state.approval, "fraud-1.4.0.onnx", "model-store", location,
                            signer.kid, signer.sign_bytes)


def install(tmp_path: Path, by: str = "deployer", weights: bytes = WEIGHTS) -> tuple[Path, Lifecycle, ModelSubmitted]:
    """A version folder written by the model store's install, with an attestation signed by `by`
    (fraud-detector 1.4.0, a new submission each time)."""
    source = tmp_path / "artifacts" / "fraud-1.4.0.onnx"
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(weights)
    sha = hashlib.sha256(weights).hexdigest()
    state, cause = approved_state(source, sha)
    assert state.checked is not None
    folder = store_files.install(tmp_path / "store", state.checked, source, {"artifact_sha256": sha},
                                 "fraud-1.4.0.onnx", attestation.file_bytes(envelope_for(state, by)))
    return folder, state, cause


# --- DSSE and the statement ----------------------------------------------------------------------

def test_pae_is_the_dsse_encoding():
    # The example of the DSSE protocol (secure-systems-lab/dsse, protocol.md).
    assert attestation.pae("http://example.com/HelloWorld", b"hello world") == \
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"


def test_the_envelope_is_an_in_toto_statement_recording_the_decision(tmp_path, keyring):
    state, cause = approved_state(tmp_path / "fraud-1.4.0.onnx")
    envelope = envelope_for(state)
    raw = json.loads(attestation.file_bytes(envelope))
    assert raw["payloadType"] == "application/vnd.in-toto+json"
    assert raw["signatures"] == [{"keyid": keys.signer("deployer").kid, "sig": raw["signatures"][0]["sig"]}]
    statement = json.loads(base64.b64decode(raw["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"] == [{"name": "fraud-1.4.0.onnx", "digest": {"sha256": SHA}}]
    assert statement["predicateType"] == "https://signoff.dev/attestation/approval/v1"
    p = statement["predicate"]
    approval, requested = state.approval, f.review_requested(cause)
    assert approval is not None and approval.causation_id == requested.event_id
    assert p["decision"]["decided_by"] == "alice" and p["decision"]["policy"] == {
        "name": "default", "rule": "auto_approve", "digest": "a" * 64}
    assert p["chain"] == {"model_submitted": str(cause.event_id),
                          "checks_passed": str(f.checks_passed(cause).event_id),
                          "review_requested": str(requested.event_id), "review_decided": str(approval.event_id)}
    assert [c["name"] for c in p["checks"]] == ["integrity", "metric:accuracy"]
    assert (p["data_version"], p["code_commit"], p["metrics"]) == ("2026-11-01", "3f2c9ab", {"accuracy": 0.95,
                                                                                             "auc": 0.97})
    assert p["deployer"] == {"target": "model-store", "location": "/store/fraud-detector/1.4.0"}
    checked, signer = attestation.verify(envelope, keyring)
    assert checked.predicate.submission_id == cause.submission_id and signer.role == "deployer"


def test_the_same_facts_give_the_same_bytes(tmp_path):
    state, _ = approved_state(tmp_path / "fraud-1.4.0.onnx")
    assert attestation.file_bytes(envelope_for(state)) == attestation.file_bytes(envelope_for(state))


def test_an_attestation_over_its_bound_is_refused_when_signed(tmp_path):
    state, cause = approved_state(tmp_path / "fraud-1.4.0.onnx")
    votes = tuple(Vote(approver=f"person{i}", decision="approve", reason="r" * 3999, channel="http", at=utcnow())
                  for i in range(attestation.MAX_VOTES))
    signer = keys.signer("deployer")
    with pytest.raises(AttestationError, match=r"bytes, over the \d+ allowed: the decision carries too much text"):
        attesting.attest(state, f.decided(cause, votes=votes), "m.onnx", "model-store", "/s", signer.kid,
                         signer.sign_bytes)


# --- verify --------------------------------------------------------------------------------------

def test_a_deployed_version_verifies(tmp_path, keyring):
    folder, _, cause = install(tmp_path)
    verdict = verify(folder, keyring)
    assert verdict.ok, verdict.reason
    assert verdict.line.startswith(f"ok: fraud-detector 1.4.0 sha256 {SHA} approved by alice (human) under policy "
                                   "default aaaaaaaaaaaa, attested by deployer")
    assert verify(folder / "fraud-1.4.0.onnx", keyring).ok  # the artifact file itself
    assert verdict.statement is not None and verdict.statement.predicate.submission_id == cause.submission_id


@pytest.mark.parametrize("at", [0, 13, len(WEIGHTS) // 2, len(WEIGHTS) - 1])
def test_a_one_byte_change_to_the_model_is_refused(tmp_path, keyring, at):
    folder, _, _ = install(tmp_path)
    model = folder / "fraud-1.4.0.onnx"
    data = bytearray(model.read_bytes())
    data[at] ^= 0x01
    model.write_bytes(bytes(data))
    verdict = verify(folder, keyring)
    assert not verdict.ok and "the file was changed" in verdict.reason and SHA in verdict.reason


def test_a_one_byte_change_anywhere_in_the_attestation_is_refused(tmp_path, keyring):
    folder, _, _ = install(tmp_path)
    file = folder / ATTESTATION_FILE
    original = file.read_bytes()
    assert verify(folder, keyring).ok
    accepted = []
    for at in range(len(original)):
        # A flipped bit; and, around the JSON's own characters, whitespace a JSON parser would not mind.
        for new in (original[at] ^ 0x01, *((ord(" "),) if not chr(original[at]).isalnum() else ())):
            changed = bytearray(original)
            changed[at] = new
            file.write_bytes(bytes(changed))
            if changed != original and verify(folder, keyring).ok:
                accepted.append((at, new))
    assert accepted == []


def test_a_changed_payload_re_encoded_cleanly_fails_the_signature(tmp_path, keyring):
    folder, _, _ = install(tmp_path)
    file = folder / ATTESTATION_FILE
    envelope = json.loads(file.read_bytes())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["decision"]["decided_by"] = "mallory"
    envelope["payload"] = base64.b64encode(attestation.canonical(statement)).decode()
    file.write_bytes(attestation.canonical(envelope) + b"\n")  # in the deployer's form: only the signature tells
    verdict = verify(folder, keyring)
    assert not verdict.ok and "does not verify" in verdict.reason


def test_a_changed_signature_is_refused(tmp_path, keyring):
    folder, _, _ = install(tmp_path)
    file = folder / ATTESTATION_FILE
    envelope = json.loads(file.read_bytes())
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[10] ^= 0x80
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    file.write_bytes(attestation.canonical(envelope) + b"\n")
    verdict = verify(folder, keyring)
    assert not verdict.ok and "does not verify" in verdict.reason


def test_a_key_the_trust_file_does_not_list_is_refused(tmp_path, keyring):
    folder, state, _ = install(tmp_path)
    stranger = signing.Signer(Ed25519PrivateKey.generate())
    assert state.approval is not None
    forged = attesting.attest(state, state.approval, "fraud-1.4.0.onnx", "model-store", "/s", stranger.kid,
                              stranger.sign_bytes)
    (folder / ATTESTATION_FILE).write_bytes(attestation.file_bytes(forged))
    verdict = verify(folder, keyring)
    assert not verdict.ok and f"key {stranger.kid} is not in the trust file" in verdict.reason


def test_a_key_trusted_for_another_role_is_refused(tmp_path, keyring):
    folder, _, _ = install(tmp_path, by="oncall")  # an operator's key: trusted, but not to attest
    verdict = verify(folder, keyring)
    assert not verdict.ok and "oncall's (role operator); an attestation is the deployer's" in verdict.reason


def test_a_revoked_release_is_refused_offline(tmp_path, keyring):
    folder, _, _ = install(tmp_path)
    copy = tmp_path / "copy"  # what a serving node copied before the revocation
    copy.mkdir()
    for file in folder.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    moved = store_files.retire(tmp_path / "store", "fraud-detector", "1.4.0",
                               {"requested_by": "oncall", "reason": "training data leak"})
    assert moved is not None and (moved / "REVOKED").exists()
    kept = verify(moved, keyring)
    assert not kept.ok and "was revoked" in kept.reason
    (copy / "REVOKED").write_bytes((moved / "REVOKED").read_bytes())
    marked = verify(copy, keyring)
    assert not marked.ok and "marked in the model store by oncall: training data leak" in marked.reason
    (copy / "REVOKED").unlink()
    # the copy, unmarked and away from the store, is not known offline to be revoked
    assert verify(copy, keyring, expected_model="fraud-detector", expected_version="1.4.0").ok


def test_a_version_retired_from_its_store_is_refused_when_put_back(tmp_path, keyring):
    folder, _, _ = install(tmp_path)
    saved = {p.name: p.read_bytes() for p in folder.iterdir()}
    store_files.retire(tmp_path / "store", "fraud-detector", "1.4.0")
    folder.mkdir()
    for name, data in saved.items():
        (folder / name).write_bytes(data)
    verdict = verify(folder, keyring)
    assert not verdict.ok and "retired into" in verdict.reason


def test_a_revoked_release_is_refused_online(tmp_path, keyring):
    folder, state, cause = install(tmp_path)
    assert state.checked is not None
    revoked = DeploymentRevoked.caused_by(cause, candidate=state.checked, requested_by="oncall", reason="leak",
                                          was_in_production=True)
    requested = RevocationRequested(submission_id=cause.submission_id, model="fraud-detector",
                                    requested_by="oncall", reason="pii")
    other = RevocationRequested(submission_id=uuid.uuid4(), model="fraud-detector", requested_by="oncall",
                                reason="another one")
    assert verify(folder, keyring, revoked=Revocations.from_events([other])).ok
    by_event = verify(folder, keyring, revoked=Revocations.from_events([revoked]))
    assert not by_event.ok and "revoked by oncall: leak" in by_event.reason
    by_request = verify(folder, keyring, revoked=Revocations.from_events([requested]))
    assert not by_request.ok and "revocation requested by oncall: pii" in by_request.reason
    same_bytes = DeploymentRevoked.caused_by(f.submitted(), candidate=state.checked.model_copy(
        update={"version": "0.9"}), requested_by="oncall", reason="banned digest", was_in_production=False)
    assert not verify(folder, keyring, revoked=Revocations.from_events([same_bytes])).ok  # by digest


def test_an_oversized_attestation_is_refused_before_it_is_parsed(tmp_path, keyring):
    folder, _, _ = install(tmp_path)
    (folder / ATTESTATION_FILE).write_bytes(b" " * (attestation.MAX_ENVELOPE_BYTES + 1))
    verdict = verify(folder, keyring)
    assert not verdict.ok and f"at most {attestation.MAX_ENVELOPE_BYTES}" in verdict.reason


@pytest.mark.parametrize(("content", "says"), [
    (b"not json", "is not JSON"),
    (b'{"payload": "", "payload": ""}', "has the key 'payload' twice"),
    (b'{"payloadType": NaN}', "contains NaN"),
    (b"[" * 100_000 + b"]" * 100_000, "is not JSON"),
    (b'{"payloadType": "application/vnd.in-toto+json", "payload": "e30=", "signatures": []}', "signatures"),
    (b"\xff\xfe", "is not JSON"),
])
def test_a_malformed_attestation_is_refused_naming_the_problem(tmp_path, keyring, content, says):
    folder, _, _ = install(tmp_path)
    (folder / ATTESTATION_FILE).write_bytes(content)
    verdict = verify(folder, keyring)
    assert not verdict.ok and says in verdict.reason and "\n" not in verdict.reason


def test_a_file_the_attestation_does_not_cover_is_refused(tmp_path, keyring):
    folder, _, _ = install(tmp_path)
    (folder / "extra.bin").write_bytes(b"loaded by a server too")
    verdict = verify(folder, keyring)
    assert not verdict.ok and "'extra.bin', which the attestation does not cover" in verdict.reason


def test_an_artifact_under_another_name_or_no_attestation_is_refused(tmp_path, keyring):
    folder, _, _ = install(tmp_path)
    renamed = folder / "other.onnx"
    (folder / "fraud-1.4.0.onnx").rename(renamed)
    assert "is for 'fraud-1.4.0.onnx', not 'other.onnx'" in verify(renamed, keyring).reason
    (folder / ATTESTATION_FILE).unlink()
    assert "no attestation" in verify(folder, keyring).reason
    assert "No such file" in verify(tmp_path / "nowhere", keyring).reason


def test_verify_envelope_checks_an_envelope_in_hand(tmp_path, keyring):
    folder, state, _ = install(tmp_path)
    body = envelope_for(state).model_dump(mode="json")  # as a webhook body carries it
    assert verifying.verify_envelope(body, folder / "fraud-1.4.0.onnx", keyring).ok
    tampered = {**body, "payload": body["payload"][:-4] + "AAA="}
    assert not verifying.verify_envelope(tampered, folder / "fraud-1.4.0.onnx", keyring).ok
    assert not verifying.verify_envelope({"payload": 1}, folder / "fraud-1.4.0.onnx", keyring).ok


# --- the command ----------------------------------------------------------------------------------

def test_the_command_exits_0_with_the_summary_or_1_with_the_reason(tmp_path):
    from signoff.cli import app

    folder, _, _ = install(tmp_path)
    runner = CliRunner()
    env = {"SIGNOFF_TRUSTED_KEYS": str(keys.keys().trust)}
    ok = runner.invoke(app, ["verify", str(folder)], env=env)
    assert ok.exit_code == 0 and ok.output.startswith("ok: fraud-detector 1.4.0 sha256") and ok.output.count("\n") == 1
    (folder / "fraud-1.4.0.onnx").write_bytes(WEIGHTS + b"!")
    bad = runner.invoke(app, ["verify", str(folder)], env=env)
    assert bad.exit_code == 1 and bad.output.startswith("refused: ") and bad.output.count("\n") == 1
    untrusted = runner.invoke(app, ["verify", str(folder)], env={"SIGNOFF_TRUSTED_KEYS": None})
    assert untrusted.exit_code == 1 and "set SIGNOFF_TRUSTED_KEYS" in untrusted.output


# --- stored and older data ---------------------------------------------------------------------------

def test_a_deployment_succeeded_of_version_3_reads_as_unattested():
    data = f.deployment_succeeded().model_dump(mode="json")
    del data["attestation"]
    event = DeploymentSucceeded.model_validate({**data, "schema_version": 3})
    assert event.attestation is None and event.schema_version == DeploymentSucceeded.class_version


def test_a_lifecycle_stored_before_attestations_still_loads():
    stored = {"submission_id": str(uuid.uuid4()), "status": "open", "metrics": {}}
    state = Lifecycle.model_validate_json(json.dumps(stored))
    assert (state.results, state.submitted_by, state.submitted_event_id) == ((), None, None)
