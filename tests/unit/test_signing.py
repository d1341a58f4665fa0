"""Signing and verifying events (shared.signing), the trust file, key files, `signoff keys generate`."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from shared import codec, reader, signing
from shared.events import EVENT_TYPES, RevocationRequested
from signoff.cli import app
from tests.unit import factories as f

ROLES = {"deployer": "deployer", "validator": "validator", "ci": "pipeline", "oncall": "operator"}


@pytest.fixture(scope="module")
def keys() -> dict[str, Ed25519PrivateKey]:
    return {name: Ed25519PrivateKey.generate() for name in ROLES}


def keyring(keys, accept_unsigned=(), not_after=None, **entries) -> signing.Keyring:
    trusted = [signing.TrustedKey(signing.key_id(k.public_key()), signing.Principal(n, ROLES[n]), k.public_key(),
                                  not_after if n == "deployer" else None) for n, k in keys.items()]
    return signing.Keyring(trusted, accept_unsigned)


def headers(record: codec.Record) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in record.headers.items()]


def verify(ring: signing.Keyring, record: codec.Record) -> signing.Principal | None:
    return ring.verify(record.topic, record.key, headers(record), record.value)


def deployed(key: Ed25519PrivateKey) -> codec.Record:
    return signing.Signer(key).sign(codec.encode(f.deployment_succeeded(), "/signoff/deployer"))


def test_a_signed_record_verifies_to_its_signer(keys):
    assert verify(keyring(keys), deployed(keys["deployer"])) == signing.Principal("deployer", "deployer")


@pytest.mark.parametrize("change", [
    lambda r: r._replace(value=r.value.replace(b"model-store", b"model-stork")),
    lambda r: r._replace(key=b"another-model"),
    lambda r: r._replace(topic="deployment.rolled_back"),
    lambda r: r._replace(headers={**r.headers, "ce_subject": "00000000-0000-0000-0000-000000000000"}),
    lambda r: r._replace(headers={**r.headers, "ce_time": "2020-01-01T00:00:00Z"}),
    lambda r: r._replace(headers={**r.headers, "ce_extra": "added after signing"}),
    lambda r: r._replace(headers={k: v for k, v in r.headers.items() if k != "content-type"}),
], ids=["value", "key", "topic", "subject", "time", "added header", "removed header"])
def test_any_change_after_signing_fails_to_verify(keys, change):
    with pytest.raises(signing.BadSignature, match="signature does not verify"):
        verify(keyring(keys), change(deployed(keys["deployer"])))


def test_a_header_that_is_not_covered_may_be_added(keys):
    record = deployed(keys["deployer"])
    assert verify(keyring(keys), record._replace(headers={**record.headers, "correlation_id": "x"})) is not None


def test_a_signature_by_another_role_is_refused_naming_both(keys):
    with pytest.raises(signing.WrongSigner, match=r"^signed by validator \(role validator\), but "
                       r"signoff.deployment.succeeded is decided by the deployer$"):
        verify(keyring(keys), deployed(keys["validator"]))


def test_an_unknown_key_is_refused(keys):
    with pytest.raises(signing.UnknownKey, match="^unknown key id "):
        verify(keyring(keys), deployed(Ed25519PrivateKey.generate()))


def test_a_signature_made_with_another_key_under_a_trusted_kid_fails(keys):
    record = deployed(Ed25519PrivateKey.generate())
    forged = record._replace(headers={**record.headers,
                                      signing.KID_HEADER: signing.key_id(keys["deployer"].public_key())})
    with pytest.raises(signing.BadSignature):
        verify(keyring(keys), forged)


def test_an_expired_key_signs_nothing_after_not_after_but_its_history_verifies(keys):
    record = deployed(keys["deployer"])
    event_time = datetime.fromisoformat(record.headers["ce_time"])
    assert verify(keyring(keys, not_after=event_time + timedelta(seconds=1)), record) is not None
    with pytest.raises(signing.UnknownKey, match="expired at"):
        verify(keyring(keys, not_after=event_time - timedelta(seconds=1)), record)


def test_unsigned_records_are_refused_unless_their_type_may_be_unsigned(keys):
    with pytest.raises(signing.Unsigned, match="^unsigned: signoff.deployment.succeeded must be signed by the "
                       "deployer$"):
        verify(keyring(keys), codec.encode(f.deployment_succeeded(), "/forger"))
    submission = codec.encode(f.submitted(), "/ci")
    with pytest.raises(signing.Unsigned, match="must be signed by the pipeline"):
        verify(keyring(keys), submission)
    assert verify(keyring(keys, accept_unsigned=[signing.SUBMITTED]), submission) is None
    # A signature is always checked, even where one is not required.
    signed = signing.Signer(keys["ci"]).sign(submission)
    assert verify(keyring(keys, accept_unsigned=[signing.SUBMITTED]), signed).name == "ci"
    with pytest.raises(signing.UnknownKey):
        verify(keyring(keys, accept_unsigned=[signing.SUBMITTED]),
               signing.Signer(Ed25519PrivateKey.generate()).sign(submission))


@pytest.mark.parametrize(("extra", "error", "match"), [
    ([("signoff_sig", b"AAAA")], signing.Untrusted, "appears twice"),
    ([("ce_type", b"signoff.deployment.succeeded")], signing.Untrusted, "header ce_type appears twice"),
])
def test_repeated_headers_are_ambiguous_and_refused(keys, extra, error, match):
    record = deployed(keys["deployer"])
    with pytest.raises(error, match=match):
        keyring(keys).verify(record.topic, record.key, headers(record) + extra, record.value)


@pytest.mark.parametrize(("kid", "sig", "match"), [
    (None, "x", "only signoff_sig"), ("short", "x", "malformed signoff_kid"),
    ("a" * 22, "!!!", "malformed signoff_sig"), ("a" * 22, "AAAA", "3 bytes, an Ed25519 signature has 64"),
])
def test_malformed_signature_headers_are_refused(keys, kid, sig, match):
    record = codec.encode(f.deployment_succeeded(), "/forger")
    extra = {**({signing.KID_HEADER: kid} if kid else {}), signing.SIG_HEADER: sig}
    with pytest.raises(signing.Untrusted, match=match):
        verify(keyring(keys), record._replace(headers={**record.headers, **extra}))


def test_every_event_type_has_its_signers():
    assert {cls.type for cls in EVENT_TYPES} == set(signing.TRUST)
    assert all(signing.TRUST[t] <= set(signing.ROLES) and signing.TRUST[t] for t in signing.TRUST)


def test_reader_decode_with_a_keyring_skips_forgeries(keys):
    def consumer_record(r: codec.Record):
        return SimpleNamespace(topic=r.topic, key=r.key, value=r.value, headers=headers(r))

    assert reader.decode(consumer_record(deployed(keys["deployer"])), keyring(keys)) is not None
    forged = consumer_record(codec.encode(f.deployment_succeeded(), "/forger"))
    assert reader.decode(forged) is not None  # without a keyring nothing is verified
    assert reader.decode(forged, keyring(keys)) is None


def test_verified_signer_is_scoped():
    someone = signing.Principal("oncall", "operator")
    assert signing.verified_signer() is None
    with signing.signed_by(someone):
        assert signing.verified_signer() == someone
    assert signing.verified_signer() is None


# -- trust file -------------------------------------------------------------------------------

def entry(key: Ed25519PrivateKey, **over) -> dict:
    """A valid entry of the deployer's key, with `over` replacing fields."""
    return {**signing.new_entry(key, "deployer", "deployer").model_dump(mode="json", exclude_none=True), **over}


def write(tmp_path: Path, text: str, name: str = "trust.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_trust_file_loads_from_yaml_and_json(tmp_path, keys):
    trust = signing.TrustFile(keys=[signing.new_entry(keys["deployer"], "deployer", "deployer", team="ml-platform")])
    for name in ("trust.yaml", "trust.json"):
        signing.write_trust(tmp_path / name, trust)
        ring = signing.load_trust(tmp_path / name)
        assert verify(ring, deployed(keys["deployer"])) == signing.Principal("deployer", "deployer", None,
                                                                             "ml-platform")


@pytest.mark.parametrize(("change", "match"), [
    ({"role": "admin"}, r"keys.0.role: Input should be 'validator'"),
    ({"kid": "A" * 22}, r"keys.0 \(kid A{22}\).kid: the fingerprint of its public_key is "),
    ({"public_key": "not base64!"}, r"keys.0 \(kid .*\).public_key: public_key is not base64"),
    ({"principal": "bad name"}, r"keys.0.principal: String should match pattern"),
    ({"extra": "x"}, r"keys.0.extra: Extra inputs are not permitted"),
    ({"not_after": "2027-01-01T00:00:00"}, r"keys.0.not_after: Value error, give a time zone"),
])
def test_a_bad_trust_entry_is_named_with_its_field(tmp_path, keys, change, match):
    path = write(tmp_path, json.dumps({"keys": [entry(keys["deployer"], **change)]}), "trust.json")
    with pytest.raises(signing.KeyProblem, match=match):
        signing.load_trust(path)


def test_a_kid_listed_twice_or_a_principal_with_two_roles_is_refused(tmp_path, keys):
    twice = write(tmp_path, json.dumps({"keys": [entry(keys["deployer"]), entry(keys["deployer"])]}), "a.json")
    with pytest.raises(signing.KeyProblem, match="keys.1 .*kid: also keys.0"):
        signing.load_trust(twice)
    roles = write(tmp_path, json.dumps({"keys": [entry(keys["deployer"]),
                                                 entry(keys["oncall"], role="operator")]}), "b.json")
    with pytest.raises(signing.KeyProblem, match="keys.1 .*role: deployer is deployer in an earlier entry"):
        signing.load_trust(roles)


def test_a_trust_file_is_bounded(tmp_path):
    path = write(tmp_path, "#" * (signing.MAX_TRUST_BYTES + 1))
    with pytest.raises(signing.KeyProblem, match="a trust file is at most"):
        signing.load_trust(path)
    with pytest.raises(signing.KeyProblem, match="not YAML"):
        signing.load_trust(write(tmp_path, "keys: [", "c.yaml"))


# -- private keys -----------------------------------------------------------------------------

def test_a_key_file_readable_by_others_is_refused(tmp_path, keys):
    path = tmp_path / "k.pem"
    signing.write_private(path, keys["oncall"])
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert signing.load_private(path, None, file_variable="F", env_variable="E").kid == \
        signing.key_id(keys["oncall"].public_key())
    path.chmod(0o640)
    with pytest.raises(signing.KeyProblem, match=r"^F=.*readable or writable by group or others \(mode 640\); "
                       "run chmod 600"):
        signing.load_private(path, None, file_variable="F", env_variable="E")


def test_a_missing_or_bad_key_names_the_variable(keys):
    with pytest.raises(signing.KeyProblem, match="no signing key: set DEPLOYER_SIGNING_KEY_FILE"):
        signing.load_private(None, None, file_variable="DEPLOYER_SIGNING_KEY_FILE",
                             env_variable="DEPLOYER_SIGNING_KEY")
    with pytest.raises(signing.KeyProblem, match="^E: not an unencrypted PEM private key"):
        signing.load_private(None, "junk", file_variable="F", env_variable="E")
    pem = signing.private_pem(keys["oncall"]).decode()
    assert signing.load_private(None, pem, file_variable="F", env_variable="E").kid == \
        signing.key_id(keys["oncall"].public_key())


# -- signoff keys generate --------------------------------------------------------------------

def test_keys_generate_then_rotate(tmp_path):
    runner = CliRunner()
    folder = tmp_path / "keys"
    first = runner.invoke(app, ["keys", "generate", "oncall", "--role", "operator", "--team", "sre",
                                "--dir", str(folder)])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["keys", "generate", "oncall", "--role", "operator", "--dir", str(folder)])
    assert again.exit_code == 1 and "--rotate" in again.output
    other_role = runner.invoke(app, ["keys", "generate", "oncall", "--role", "deployer", "--rotate",
                                     "--dir", str(folder)])
    assert other_role.exit_code == 1 and "a principal has one role" in other_role.output
    rotated = runner.invoke(app, ["keys", "generate", "oncall", "--role", "operator", "--rotate",
                                  "--dir", str(folder)])
    assert rotated.exit_code == 0, rotated.output

    trust = signing.read_trust(folder / "trusted-keys.yaml")
    assert [e.principal for e in trust.keys] == ["oncall", "oncall"] and trust.keys[0].team == "sre"
    ring = signing.load_trust(folder / "trusted-keys.yaml")
    revocation = RevocationRequested(submission_id=uuid.uuid4(), model="fraud-detector", requested_by="oncall",
                                     reason="leak")
    files = sorted(folder.glob("oncall.*.pem"))
    assert len(files) == 2 and all(p.stat().st_mode & 0o777 == 0o600 for p in files)
    for path in files:  # both keys verify: old and new kids side by side during the rotation
        signer = signing.load_private(path, None, file_variable="F", env_variable="E")
        record = signer.sign(codec.encode(revocation, "/cli"))
        assert verify(ring, record) == signing.Principal("oncall", "operator", None, "sre")


def test_an_expiry_is_recorded(tmp_path):
    result = CliRunner().invoke(app, ["keys", "generate", "ci", "--role", "pipeline", "--dir", str(tmp_path),
                                      "--not-after", "2027-01-31T00:00:00+00:00"])
    assert result.exit_code == 0, result.output
    [only] = signing.read_trust(tmp_path / "trusted-keys.yaml").keys
    assert only.not_after == datetime(2027, 1, 31, tzinfo=UTC)


# -- signoff rollback / revoke: who asks is the key's holder ----------------------------------

def test_rollback_needs_an_operators_key_in_the_trust_file(tmp_path, monkeypatch):
    runner = CliRunner()
    folder = tmp_path / "keys"
    for name, role in (("ci", "pipeline"), ("oncall", "operator")):
        assert runner.invoke(app, ["keys", "generate", name, "--role", role, "--dir", str(folder)]).exit_code == 0
    for variable in ("SIGNOFF_SIGNING_KEY_FILE", "SIGNOFF_SIGNING_KEY", "SIGNOFF_TRUSTED_KEYS"):
        monkeypatch.delenv(variable, raising=False)

    claimed = runner.invoke(app, ["rollback", "fraud-detector", "--as", "oncall", "--reason", "x"])
    assert claimed.exit_code == 2 and "--as" in claimed.output  # a name is no longer taken on trust
    unkeyed = runner.invoke(app, ["rollback", "fraud-detector", "--reason", "x"])
    assert unkeyed.exit_code == 1 and "set SIGNOFF_SIGNING_KEY_FILE" in unkeyed.output

    monkeypatch.setenv("SIGNOFF_TRUSTED_KEYS", str(folder / "trusted-keys.yaml"))
    monkeypatch.setenv("SIGNOFF_SIGNING_KEY_FILE", str(folder / "ci.pem"))
    pipeline = runner.invoke(app, ["revoke", str(uuid.uuid4()), "--reason", "x"])
    assert pipeline.exit_code == 1 and "ci's, of role pipeline; this needs a key of role operator" in pipeline.output
    stranger = tmp_path / "stranger.pem"
    signing.write_private(stranger, Ed25519PrivateKey.generate())
    monkeypatch.setenv("SIGNOFF_SIGNING_KEY_FILE", str(stranger))
    unknown = runner.invoke(app, ["rollback", "fraud-detector", "--reason", "x"])
    assert unknown.exit_code == 1 and "is not in the trust file" in unknown.output


def test_the_operator_is_the_keys_holder(tmp_path):
    from signoff import client, keys_cli
    from signoff.settings import ClientSettings

    keys_cli.generate("oncall", "operator", tmp_path, team="sre")
    settings = ClientSettings(signing_key_file=tmp_path / "oncall.pem", trusted_keys=tmp_path / "trusted-keys.yaml")
    operator = keys_cli.operator(settings)
    assert operator.principal == signing.Principal("oncall", "operator", None, "sre")
    assert isinstance(operator, client.Identity)


def test_submit_refuses_to_sign_with_a_key_that_is_not_a_pipelines(tmp_path, monkeypatch):
    from signoff import keys_cli

    keys_cli.generate("oncall", "operator", tmp_path)
    monkeypatch.setenv("SIGNOFF_SIGNING_KEY_FILE", str(tmp_path / "oncall.pem"))
    monkeypatch.setenv("SIGNOFF_TRUSTED_KEYS", str(tmp_path / "trusted-keys.yaml"))
    result = CliRunner().invoke(app, ["submit", "--model", "m", "--version", "1", "--artifact", "file:///x",
                                      "--sha256", "0" * 64, "--metric", "accuracy=0.9", "--data-version", "d",
                                      "--code-commit", "abc1234", "--submitter", "ci"])
    assert result.exit_code == 1 and "this needs a key of role pipeline" in result.output, result.output
