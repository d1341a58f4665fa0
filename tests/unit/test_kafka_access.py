"""How clients reach Kafka (shared/kafka.py) and the ACL table's diff (shared/acl.py), without a broker."""

from __future__ import annotations

import re
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faststream.security import SASLScram512
from pydantic import SecretStr
from structlog.testing import capture_logs

from shared import acl, kafka, topics
from shared.kafka import KafkaAccess, KafkaSettings, read_password_file

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cret-password-never-shown"


def settings(**fields) -> KafkaSettings:
    return KafkaSettings(**{"kafka_bootstrap_servers": "127.0.0.1:9092", **fields})


@pytest.mark.parametrize(("fields", "variable"), [
    ({}, "KAFKA_SASL_USERNAME"),
    ({"kafka_sasl_username": "validator"}, "KAFKA_SASL_PASSWORD_FILE"),
    ({"kafka_sasl_username": "validator", "kafka_sasl_password": SECRET, "kafka_security_protocol": "SASL_SSL",
      "kafka_ssl_cafile": "/nonexistent/ca.pem"}, "KAFKA_SSL_CAFILE"),
    ({"kafka_sasl_username": "validator", "kafka_sasl_password": SECRET, "kafka_sasl_password_file": "/x"},
     "not both"),
])
def test_incomplete_settings_name_the_variable_to_set_and_never_the_password(fields, variable) -> None:
    with pytest.raises(ValueError) as caught:
        settings(**fields).kafka  # noqa: B018 - the property validates
    assert variable in str(caught.value) and SECRET not in str(caught.value)


def test_secured_is_the_default_and_the_password_stays_secret() -> None:
    access = settings(kafka_sasl_username="pipeline", kafka_sasl_password=SECRET).kafka
    assert access.security_protocol == "SASL_PLAINTEXT" and access.sasl_mechanism == "SCRAM-SHA-512"
    assert SECRET not in repr(access) and SECRET not in str(settings(kafka_sasl_password=SECRET))
    kwargs = access.client_kwargs()
    assert kwargs | {"sasl_plain_password": "-"} == {
        "bootstrap_servers": "127.0.0.1:9092", "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "pipeline", "sasl_plain_password": "-"}
    assert kwargs["sasl_plain_password"] == SECRET


def test_sasl_ssl_verifies_the_broker_against_the_ca_file(tmp_path) -> None:
    ca = write_ca(tmp_path / "ca.pem")
    access = KafkaAccess(bootstrap_servers="kafka:9093", security_protocol="SASL_SSL", sasl_username="deployer",
                         sasl_password=SECRET, ssl_cafile=ca)
    context = access.client_kwargs()["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    security = access.security()
    assert isinstance(security, SASLScram512) and security.use_ssl and security.ssl_context is not None
    assert access.env()["KAFKA_SSL_CAFILE"] == str(ca)


def test_plaintext_is_an_explicit_opt_in_logged_once(monkeypatch) -> None:
    monkeypatch.setattr(kafka, "_warned_plaintext", False)
    access = settings(kafka_security_protocol="PLAINTEXT").kafka
    with capture_logs() as logs:
        assert access.security() is None
        assert access.client_kwargs() == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}
    assert [entry["event"] for entry in logs] == ["kafka_plaintext"]


def test_a_password_file_gives_its_first_line_and_is_bounded(tmp_path) -> None:
    path = tmp_path / "validator"
    path.write_text(SECRET + "\n")
    assert read_password_file(path) == SecretStr(SECRET)
    access = settings(kafka_sasl_username="validator", kafka_sasl_password_file=path).kafka
    assert access.sasl_password == SecretStr(SECRET)
    for content, problem in ((b"", "empty"), (b"x" * 5000, "larger than"), (b"\xff\xfe", "not UTF-8")):
        path.write_bytes(content)
        with pytest.raises(ValueError, match=problem):
            read_password_file(path)
    with pytest.raises(ValueError, match="KAFKA_SASL_PASSWORD_FILE: cannot read"):
        read_password_file(tmp_path / "missing")


def binding(principal: str, topic: str, op: acl.Operation) -> acl.Binding:
    return acl.Binding(acl.user(principal), acl.ResourceType.TOPIC, topic, acl.PatternType.LITERAL, op)


def test_the_diff_creates_what_is_missing_and_deletes_only_managed_extras() -> None:
    table = acl.Table()
    want = sorted(table.bindings())
    stray = binding("validator", topics.REVIEW_DECIDED, acl.Operation.WRITE)       # managed: deleted
    foreign = binding("other-app", "other.topic", acl.Operation.WRITE)              # not ours: kept
    changes = acl.diff(table, [*want[1:], stray, foreign])
    assert changes.create == (want[0],) and changes.delete == (stray,)
    assert changes.lines() == [f"+ {want[0]}", f"- {stray}"]
    assert acl.diff(table, [*want, foreign]).lines() == ["no changes"]


def test_nobody_but_the_admin_is_granted_configs_deletes_or_creates() -> None:
    table = acl.Table(pipelines=("team-a", "team-b"))
    ops = {b.operation for b in table.bindings()}
    assert ops == {acl.Operation.READ, acl.Operation.WRITE, acl.Operation.DESCRIBE, acl.Operation.DESCRIBE_CONFIGS}
    # Reading configs is the services' start-up check (shared/topic_admin.py); nobody else reads them.
    assert {b.principal for b in table.bindings() if b.operation == acl.Operation.DESCRIBE_CONFIGS} == {
        acl.user(s) for s in acl.SERVICES}
    assert not any(b.principal == acl.user(acl.ADMIN) for b in table.bindings())  # a super user
    assert table.allows("team-b", acl.Operation.WRITE, topics.MODEL_SUBMITTED)
    assert not table.allows("team-b", acl.Operation.WRITE, topics.CHECKS_PASSED)


@pytest.mark.parametrize("pipelines", [("validator",), ("admin",), ("operator",), ("-bad",), ("a b",), ()])
def test_a_pipeline_principal_is_never_a_service_the_admin_or_an_odd_name(pipelines) -> None:
    with pytest.raises(ValueError):
        acl.Table(pipelines=pipelines)


def test_kafka_sh_makes_a_credential_for_every_principal_of_the_table() -> None:
    script = (ROOT / "deploy" / "kafka" / "kafka.sh").read_text()
    [users] = re.findall(r'^USERS="broker \$\{KAFKA_USERS:-([^}]*)\}"$', script, re.M)
    assert set(users.split()) == {acl.ADMIN, *acl.Table().principals}


def write_ca(path: Path) -> Path:
    """A self-signed CA certificate (PEM), as `kafka.sh certs` makes one."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_each_service_of_a_stack_runs_as_its_own_principal(tmp_path) -> None:
    from signoff.devstack import Stack, as_principal, credentials_env

    folder = tmp_path / "credentials"
    stack = Stack(tmp_path, {"KAFKA_SASL_USERNAME": "admin", "KAFKA_SASL_PASSWORD": SECRET,
                             "KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, service_env=credentials_env(folder))
    env = stack.env_of("review_notifier")
    assert env["KAFKA_SASL_USERNAME"] == "review-notifier"
    assert env["KAFKA_SASL_PASSWORD_FILE"] == str(folder / "review-notifier")
    assert "KAFKA_SASL_PASSWORD" not in env  # never the admin's password beside its own file
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"  # the cluster's, kept
    cli = as_principal(stack.env, folder, "pipeline")
    assert (cli["KAFKA_SASL_USERNAME"], "KAFKA_SASL_PASSWORD" in cli) == ("pipeline", False)
    assert {stack.env_of(m)["KAFKA_SASL_USERNAME"] for m in ("validator", "policy", "deployer")} == {
        "validator", "policy", "deployer"}
