"""compose.yaml: valid Compose, and consistent with the code and the settings it runs.

No Docker engine runs where these tests run. The Compose Specification's JSON Schema checks the
file's shape; the tests below check what the schema cannot know: the Kafka version the project
pins, the service modules, the settings classes, the volumes behind their paths, the listeners.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator
from pydantic_settings import BaseSettings

from services.deployer.settings import DeployerSettings
from services.policy.settings import PolicySettings
from services.review_notifier.channels.email import EmailChannel
from services.review_notifier.settings import ReviewNotifierSettings
from services.validator.settings import ValidatorSettings
from shared import acl
from tests import kafka_broker

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT.parent / "shared" / "schemas" / "compose-spec.json"
POM = ROOT / "deploy" / "kafka" / "pom.xml"

# compose name -> (Python package under services/, settings class)
SERVICES: dict[str, tuple[str, type[BaseSettings]]] = {
    "validator": ("validator", ValidatorSettings),
    "policy": ("policy", PolicySettings),
    "review-notifier": ("review_notifier", ReviewNotifierSettings),
    "deployer": ("deployer", DeployerSettings),
}
BROKER_GRACEFUL_TIMEOUT_S = 30.0  # KafkaBroker(graceful_timeout=...) in shared/broker.py
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|CREDENTIAL", re.IGNORECASE)
# ${NAME}, ${NAME?msg} or ${NAME:?msg}: a value from the environment, never a default in the file.
FROM_ENVIRONMENT = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:?\?[^}]*)?\}")
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def interpolated(value: str) -> str:
    """The value as Compose would pass it, with defaults applied and required variables filled."""
    def one(match: re.Match) -> str:
        operator, word = match.group(2), match.group(3)
        if operator in (":-", "-"):
            return word
        # A URL variable gets a URL (settings refuse anything but https:// for them).
        return "https://value.example/from-the-environment" if match.group(1).endswith("_URL") \
            else "value-from-the-environment"
    return INTERPOLATION.sub(one, value).replace("$$", "$")


def mounts(service: dict) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) of each volume, from the short or the long syntax."""
    out = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            out.append((source, target, "ro" in (mode[0].split(",") if mode else [])))
        else:
            out.append((volume.get("source", ""), volume["target"], bool(volume.get("read_only"))))
    return out


def command_of(service: dict) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else list(command)


def seconds(duration: str) -> float:
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", str(duration))
    assert parts and "".join(n + u for n, u in parts) == str(duration), f"bad duration {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def load_settings(compose: dict, name: str, monkeypatch: pytest.MonkeyPatch) -> BaseSettings:
    """The service's settings exactly as its container would build them from compose.yaml."""
    _, settings_class = SERVICES[name]
    env = {key: interpolated(value) for key, value in env_of(compose["services"][name]).items()}
    prefix = settings_class.model_config["env_prefix"]
    unknown = [k for k in env if k.startswith(prefix) and k[len(prefix):].lower()
               not in settings_class.model_fields]
    assert not unknown, f"{name}: settings ignore these variables (extra='ignore'): {unknown}"
    for key in list(os.environ):
        if key.startswith((prefix, "SIGNOFF_", "KAFKA_")):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    stand_in_secrets(env, monkeypatch)
    return settings_class()


def stand_in_secrets(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The secret files settings read at start (SIGNOFF_DATABASE_URL_FILE), as compose would mount
    them: stand-ins with the shape deploy/compose-env.sh writes."""
    if env.get("SIGNOFF_DATABASE_URL_FILE", "").startswith("/run/secrets/"):
        stand_in = Path(tempfile.mkdtemp()) / "database-url"
        stand_in.write_text("postgresql://signoff:stand-in@postgres:5432/signoff\n")
        monkeypatch.setenv("SIGNOFF_DATABASE_URL_FILE", str(stand_in))


def test_the_schema_is_a_valid_draft7_schema() -> None:
    Draft7Validator.check_schema(json.loads(SCHEMA.read_text()))


def test_compose_file_matches_the_compose_specification(compose: dict) -> None:
    validator = Draft7Validator(json.loads(SCHEMA.read_text()))
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(map(str, e.absolute_path)))
    assert not errors, "compose.yaml breaks the Compose Specification:\n" + "\n".join(
        f"  {e.json_path}: {e.message}" for e in errors)


def test_kafka_is_the_version_the_local_broker_pins(compose: dict) -> None:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = ET.parse(POM).getroot().findtext("m:properties/m:kafka.version", namespaces=ns)
    assert version, f"no <kafka.version> property in {POM}"
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{version}"
    assert kafka_broker.IMAGE == f"apache/kafka:{version}", "tests/kafka_broker.py IMAGE drifted"


THIRD_PARTY = {"kafka", "mailpit", "minio", "minio-buckets", "mlflow", "postgres", "front"}  # pulled, not built
BRIDGE = "mlflow-bridge"  # runs `signoff mlflow bridge` (a FastAPI app, not a FastStream one)
CONSOLE = "console"  # runs `python -m services.console` (a FastAPI app, not a FastStream one)


def test_every_signoff_container_runs_the_one_image(compose: dict) -> None:
    ours = {n: s for n, s in compose["services"].items() if n not in THIRD_PARTY}
    assert set(ours) == {"topics", "acl", "keys", BRIDGE, CONSOLE, *SERVICES}
    builds = {json.dumps([s.get("image"), s.get("build")], sort_keys=True) for s in ours.values()}
    assert len(builds) == 1, f"services differ in image/build: {builds}"
    build = next(iter(ours.values()))["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).is_file()


def test_compose_runs_every_service_under_services(compose: dict) -> None:
    packages = {p.parent.name for p in (ROOT / "services").glob("*/app.py")}
    assert packages == {package for package, _ in SERVICES.values()} | {"mlflow_bridge", CONSOLE}


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_runs_its_faststream_app(compose: dict, name: str) -> None:
    package, _ = SERVICES[name]
    expected = ["faststream", "run", "--factory", f"services.{package}.app:create_app"]
    assert command_of(compose["services"][name]) == expected
    assert (ROOT / "services" / package / "app.py").is_file()


def test_services_start_once_topics_exist(compose: dict) -> None:
    services = compose["services"]
    topics = services["topics"]
    assert command_of(topics) == ["signoff", "topics", "create"]
    assert topics["restart"] == "no"
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in SERVICES:
        depends = services[name].get("depends_on") or {}
        assert isinstance(depends, dict) and depends.get("topics", {}).get("condition") \
            == "service_completed_successfully", f"{name} does not wait for the topics"
        assert services[name]["restart"] == "unless-stopped"


def test_services_sign_with_their_own_key_made_before_they_start(compose: dict) -> None:
    services = compose["services"]
    assert command_of(services["keys"]) == ["signoff", "keys", "init", "--dir", "/data/keys"]
    assert ("signing-keys", "/data/keys", False) in mounts(services["keys"])
    for name, (package, _) in SERVICES.items():
        service = services[name]
        assert service["depends_on"]["keys"]["condition"] == "service_completed_successfully"
        assert env_of(service)[f"{package.upper()}_SIGNING_KEY_FILE"] == f"/data/keys/{name}.pem"
        assert env_of(service)["SIGNOFF_TRUSTED_KEYS"] == "/data/keys/trusted-keys.yaml"
        assert ("signing-keys", "/data/keys", True) in mounts(service)  # read-only


@pytest.mark.parametrize("name", SERVICES)
def test_shutdown_is_given_longer_than_the_broker_drains(compose: dict, name: str) -> None:
    grace = seconds(compose["services"][name].get("stop_grace_period", "10s"))
    assert grace > BROKER_GRACEFUL_TIMEOUT_S, f"{name}: SIGKILL before FastStream commits"


@pytest.mark.parametrize("name", SERVICES)
def test_settings_load_from_the_compose_environment(
    compose: dict, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(compose, name, monkeypatch)
    host, _, port = settings.kafka_bootstrap_servers.partition(":")
    kafka = env_of(compose["services"]["kafka"])
    assert host == "kafka" and f"://kafka:{port}" in kafka["KAFKA_ADVERTISED_LISTENERS"], \
        f"{name} does not reach Kafka on a listener advertised to the other containers"


@pytest.mark.parametrize(("name", "writes", "reads"), [
    ("validator", [], ["artifact_roots"]),
    ("policy", ["state_db"], []),
    ("deployer", ["model_store", "state_db"], ["artifact_roots"]),
    ("review-notifier", ["state_db", "tokens_file"], []),  # people's API tokens outlive the container
])
def test_data_paths_live_on_named_volumes(
    compose: dict, name: str, writes: list[str], reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(compose, name, monkeypatch)
    volumes = mounts(compose["services"][name])
    declared = set(compose.get("volumes") or {})

    def mount_of(path: Path) -> tuple[str, str, bool]:
        found = [m for m in volumes if m[0] in declared and path.is_relative_to(m[1])]
        assert path.is_absolute() and found, f"{name}: {path} is not on a named volume"
        return max(found, key=lambda m: len(m[1]))

    for field in writes:
        path = getattr(settings, field)
        assert not mount_of(path)[2], \
            f"{name}: {field}={path} is on a read-only mount"
    for field in reads:
        for path in getattr(settings, field):
            source, _, read_only = mount_of(path)
            assert (source, read_only) == ("artifacts", True), \
                f"{name}: {field} {path} must be the read-only artifacts volume"


@pytest.mark.parametrize("name", ["validator", "policy"])
def test_workflows_are_the_repositorys_folder_mounted_read_only(
    compose: dict, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(compose, name, monkeypatch)
    sources = [(s, ro) for s, target, ro in mounts(compose["services"][name]) if Path(target) == settings.workflows]
    assert sources == [("./workflows", True)], f"{name} reads workflows from {settings.workflows}"
    assert (ROOT / "workflows").is_dir()


def test_review_api_is_published_and_health_checked(
    compose: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = compose["services"]["review-notifier"]
    settings = load_settings(compose, "review-notifier", monkeypatch)
    assert settings.http_host == "0.0.0.0", "the API must listen beyond the container's loopback"
    assert any(str(p).rsplit(":", 1)[-1] == str(settings.http_port) for p in service["ports"])
    assert f"http://127.0.0.1:{settings.http_port}/readyz" in " ".join(service["healthcheck"]["test"])


@pytest.mark.parametrize("name", ["validator", "policy", "review-notifier", "deployer"])
def test_every_service_is_health_checked_on_its_readyz(
    compose: dict, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = compose["services"][name]
    settings = load_settings(compose, name, monkeypatch)
    assert settings.http_host == "0.0.0.0", "/metrics and /readyz must be reachable beyond the container"
    assert any(str(p).rsplit(":", 1)[-1] == str(settings.http_port) for p in service["ports"])
    assert f"http://127.0.0.1:{settings.http_port}/readyz" in " ".join(service["healthcheck"]["test"])


def test_kafka_keeps_its_data_and_serves_the_host(compose: dict) -> None:
    kafka = compose["services"]["kafka"]
    env = env_of(kafka)
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_LOG_DIRS"] in {target for source, target, _ in mounts(kafka)
                                     if source in (compose.get("volumes") or {})}
    published = {str(p).rsplit(":", 1)[-1] for p in kafka["ports"]}
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert any(address == f"localhost:{port}" for address in advertised.values() for port in published)
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])


def test_no_secret_is_written_in_the_file(compose: dict) -> None:
    literal = [f"{name}.{key}" for name, service in compose["services"].items()
               for key, value in env_of(service).items()
               if SECRET_NAME.search(key) and not key.endswith("_FILE")  # a path: SIGNOFF_TOKENS_FILE
               and not FROM_ENVIRONMENT.fullmatch(value)]
    assert not literal, f"secrets must come from ${{VAR}} / ${{VAR:?...}} interpolation: {literal}"


def test_review_mail_goes_to_the_mailpit_sink_with_its_web_inbox(
    compose: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    mailpit = compose["services"]["mailpit"]
    image, _, tag = mailpit["image"].partition(":")
    assert image == "axllent/mailpit" and tag not in ("", "latest"), "pin mailpit's version"
    published = [str(p) for p in mailpit["ports"]]
    assert published == ["127.0.0.1:8025:8025"], "the web inbox, on the loopback interface only"
    settings = load_settings(compose, "review-notifier", monkeypatch)
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_starttls) == ("mailpit", 1025, False)
    assert EmailChannel.from_settings(settings).sends and settings.token_key is not None
    assert settings.public_url.startswith("http://127.0.0.1:8081")
    depends = compose["services"]["review-notifier"]["depends_on"]
    assert depends["mailpit"]["condition"] == "service_started"
    assert depends["topics"]["condition"] == "service_completed_successfully"


def test_slack_is_off_unless_configured_and_its_secrets_come_from_the_environment(compose: dict) -> None:
    env = env_of(compose["services"]["review-notifier"])
    for key in ("REVIEW_NOTIFIER_SLACK_SIGNING_SECRET", "REVIEW_NOTIFIER_SLACK_BOT_TOKEN",
                "REVIEW_NOTIFIER_SLACK_WEBHOOK_URL", "REVIEW_NOTIFIER_TOKEN_KEY"):
        assert FROM_ENVIRONMENT.fullmatch(env[key]), f"{key} must come from the environment"
    assert json.loads(interpolated(env["REVIEW_NOTIFIER_SLACK_USERS"])) == {}
    assert json.loads(interpolated(env["REVIEW_NOTIFIER_APPROVER_EMAILS"])) == {}


def test_kafka_is_secured_and_each_container_is_its_own_principal(
    compose: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SASL_SSL everywhere (no PLAINTEXT listener), the authorizer configured by the mounted entry
    script, the ACLs applied by a one-shot the services wait for, and every container connecting
    as the principal shared/acl.py knows it by, with its password from a Docker secret."""
    services = compose["services"]
    kafka = services["kafka"]
    protocols = dict(item.split(":") for item in env_of(kafka)["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert protocols == {"INTERNAL": "SASL_SSL", "EXTERNAL": "SASL_SSL", "CONTROLLER": "SASL_PLAINTEXT"}
    assert kafka["entrypoint"] == ["sh", "/signoff/docker-entry.sh"]
    assert ("./deploy/kafka/docker-entry.sh", "/signoff/docker-entry.sh", True) in mounts(kafka)
    assert (ROOT / "deploy" / "kafka" / "docker-entry.sh").is_file()
    entry = (ROOT / "deploy" / "kafka" / "docker-entry.sh").read_text()
    assert "allow.everyone.if.no.acl.found=false" in entry and "StandardAuthorizer" in entry
    assert "--command-config" in kafka["healthcheck"]["test"]
    assert command_of(services["acl"]) == ["signoff", "acl", "apply"]
    declared = compose["secrets"]
    for source in declared.values():
        assert source["file"].startswith("./.data/compose/"), "made by deploy/kafka/compose-init.sh"
    principals = {"topics": "admin", "acl": "admin", **{name: acl.SERVICE_OF_MODULE[package]
                                                        for name, (package, _) in SERVICES.items()}}
    for name, principal in principals.items():
        env = env_of(services[name])
        assert (env["KAFKA_SECURITY_PROTOCOL"], env["KAFKA_SSL_CAFILE"]) == ("SASL_SSL", "/run/secrets/kafka-ca")
        assert env["KAFKA_SASL_USERNAME"] == principal and "KAFKA_SASL_PASSWORD" not in env
        assert env["KAFKA_SASL_PASSWORD_FILE"] == f"/run/secrets/{principal}"
        # Besides Kafka's: the service's own database URL its replicas share state through (tested below).
        own = {f"database-url-{name}"}
        assert set(services[name]["secrets"]) - own == {principal, "kafka-ca"} <= set(declared), name
        assert principal in kafka["secrets"]  # the broker formats its credential in
    for name in SERVICES:
        assert services[name]["depends_on"]["acl"]["condition"] == "service_completed_successfully"
        settings = load_settings(compose, name, monkeypatch)
        assert settings.kafka_security_protocol == "SASL_SSL"


def test_the_mlflow_bridge_is_a_pipeline_reading_minio_and_called_by_mlflow(
    compose: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.mlflow_bridge.settings import MlflowBridgeSettings
    from signoff.mlflow_source import MlflowSourceSettings

    services = compose["services"]
    bridge = services[BRIDGE]
    assert command_of(bridge) == ["signoff", "mlflow", "bridge"]
    env = {key: interpolated(value) for key, value in env_of(bridge).items()}
    assert FROM_ENVIRONMENT.fullmatch(env_of(bridge)["MLFLOW_BRIDGE_WEBHOOK_SECRET"])
    unknown = [k for k in env if k.startswith("MLFLOW_BRIDGE_") and
               k.removeprefix("MLFLOW_BRIDGE_").lower() not in MlflowBridgeSettings.model_fields]
    assert not unknown, f"the bridge's settings ignore these variables: {unknown}"
    for key in list(os.environ):
        if key.startswith(("MLFLOW_", "SIGNOFF_", "KAFKA_")):
            monkeypatch.delenv(key)
    for key, value in {**env, "MLFLOW_BRIDGE_WEBHOOK_SECRET": "x" * 32}.items():
        monkeypatch.setenv(key, value)
    settings, rules = MlflowBridgeSettings(), MlflowSourceSettings()
    assert settings.kafka_sasl_username == acl.PIPELINE and settings.kafka_security_protocol == "SASL_SSL"
    assert str(settings.kafka_sasl_password_file) == f"/run/secrets/{acl.PIPELINE}"
    assert set(bridge["secrets"]) == {acl.PIPELINE, "kafka-ca"}
    assert str(settings.signing_key_file) == "/data/keys/pipeline.pem"  # `signoff keys init` makes it
    assert ("signing-keys", "/data/keys", True) in mounts(bridge)
    assert any(source in compose["volumes"] and settings.state_db.is_relative_to(target) and not ro
               for source, target, ro in mounts(bridge)), "the bridge's state must outlive the container"
    # MLflow calls the bridge where it listens, and the bridge reads the registry MLflow serves.
    assert settings.public_url == f"http://{BRIDGE}:{settings.http_port}/mlflow/webhook"
    assert settings.http_host == "0.0.0.0"
    mlflow = services["mlflow"]
    assert rules.tracking_uri == "http://mlflow:5000" and "5000" in command_of(mlflow)
    assert bridge["depends_on"]["mlflow"]["condition"] == "service_healthy"
    # Model files: MLflow's clients write them to MinIO, and every reader of them may read there.
    root = command_of(mlflow)[command_of(mlflow).index("--default-artifact-root") + 1]
    assert "--no-serve-artifacts" in command_of(mlflow), "download URIs must be s3://, not mlflow-artifacts:/"
    assert root in settings.artifact_s3_prefixes and settings.s3_endpoint_url == "http://minio:9000"
    for name in ("validator", "deployer"):
        assert json.loads(env_of(services[name])[f"{name.upper()}_ARTIFACT_S3_PREFIXES"]) == [root]
    assert "mc mb --ignore-existing local/" + root.removeprefix("s3://").strip("/") in \
        " ".join(services["minio-buckets"]["entrypoint"])
    for name in ("minio", "minio-buckets", "mlflow"):
        image, _, tag = services[name]["image"].partition(":")
        assert tag not in ("", "latest"), f"pin {name}'s version"


def test_the_console_reads_as_its_own_principal_and_signs_people_in_with_the_review_apis_tokens(
    compose: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.console.settings import ConsoleSettings

    services = compose["services"]
    console = services[CONSOLE]
    assert command_of(console) == ["python", "-m", "services.console"]
    env = {key: interpolated(value) for key, value in env_of(console).items()}
    unknown = [k for k in env if k.startswith("CONSOLE_") and
               k.removeprefix("CONSOLE_").lower() not in ConsoleSettings.model_fields]
    assert not unknown, f"the console's settings ignore these variables: {unknown}"
    for key in list(os.environ):
        if key.startswith(("CONSOLE_", "SIGNOFF_", "KAFKA_")):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    stand_in_secrets(env, monkeypatch)
    settings = ConsoleSettings()
    assert settings.kafka_sasl_username == acl.CONSOLE and settings.kafka_security_protocol == "SASL_SSL"
    assert str(settings.kafka_sasl_password_file) == f"/run/secrets/{acl.CONSOLE}"
    assert set(console["secrets"]) == {acl.CONSOLE, "kafka-ca", "database-url-console", "console-session-key"}
    assert acl.CONSOLE in services["kafka"]["secrets"]
    # Replicas share sessions (PostgreSQL) and the key that seals them (a secret).
    assert str(settings.session_key_file) == "/run/secrets/console-session-key" and settings.database_url
    assert settings.http_host == "0.0.0.0"
    assert any(str(p).rsplit(":", 1)[-1] == str(settings.http_port) for p in console["ports"])
    assert f"http://127.0.0.1:{settings.http_port}/readyz" in " ".join(console["healthcheck"]["test"])
    # The review-notifier's token file, read-only; votes go to its API on the compose network.
    notifier = load_settings(compose, "review-notifier", monkeypatch)
    assert settings.tokens_file == notifier.tokens_file
    assert any(settings.tokens_file is not None and settings.tokens_file.is_relative_to(target) and ro
               for _, target, ro in mounts(console))
    assert settings.review_url == f"http://review-notifier:{notifier.http_port}"
    assert any(source in compose["volumes"] and settings.index_db.is_relative_to(target) and not ro
               for source, target, ro in mounts(console)), "the console's index must outlive the container"
    assert str(settings.trusted_keys) == "/data/keys/trusted-keys.yaml"


REPLICATED = ("validator", "policy", "review-notifier", "deployer", CONSOLE)


def test_postgres_is_pinned_health_checked_and_keeps_its_data(compose: dict) -> None:
    postgres = compose["services"]["postgres"]
    image, _, tag = postgres["image"].partition(":")
    assert image == "postgres" and tag.split(".")[0].isdigit(), "the official image, its major pinned"
    env = env_of(postgres)
    assert env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres-password" and "POSTGRES_PASSWORD" not in env
    assert postgres["secrets"] == ["postgres-password", *(f"database-password-{name}" for name in REPLICATED)]
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert ("postgres-data", "/var/lib/postgresql/data", False) in mounts(postgres)
    assert "postgres-data" in compose["volumes"] and not postgres.get("ports"), "no host port"


@pytest.mark.parametrize("name", REPLICATED)
def test_each_service_runs_replicas_sharing_postgres(compose: dict, name: str) -> None:
    service = compose["services"][name]
    assert interpolated(str(service["deploy"]["replicas"])) == "2"
    assert "SIGNOFF_REPLICAS" in str(service["deploy"]["replicas"])
    env = env_of(service)
    own = f"database-url-{name}"  # its own role's URL (test_each_service_is_its_own_database_role)
    assert env["SIGNOFF_DATABASE_URL_FILE"] == f"/run/secrets/{own}" and "SIGNOFF_DATABASE_URL" not in env
    assert own in service["secrets"] and own in compose["secrets"]
    assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    for port in service["ports"]:  # replicas cannot share one host port: a range, one port each
        host = str(port).rsplit(":", 1)[0].split(":")[-1]
        first, _, last = host.partition("-")
        assert last and int(last) - int(first) + 1 >= 2, f"{name}: {port} gives every replica the same host port"


def test_the_front_is_the_one_address_of_the_review_api_and_the_console(compose: dict) -> None:
    front = compose["services"]["front"]
    assert front["ports"] == ["127.0.0.1:8081:8081", "127.0.0.1:8082:8082"]
    caddyfile = compose["configs"][front["configs"][0]["source"]]["content"]
    for name, port in (("review-notifier", 8081), (CONSOLE, 8082)):
        assert f"name {name}\n" in caddyfile and f"port {port}\n" in caddyfile and f":{port} {{" in caddyfile


def referenced(service: dict, kind: str) -> list[str]:
    """The secrets or configs (`kind`) a service mounts, in the short (`name`) or long
    (`{source: name}`) syntax."""
    return [item if isinstance(item, str) else item["source"] for item in service.get(kind, [])]


@pytest.mark.parametrize("kind", ["secrets", "configs"])
def test_every_secret_and_config_a_service_mounts_is_defined_at_the_top_level(compose: dict, kind: str) -> None:
    """`docker compose up` refuses a file whose service names an undefined one ("undefined
    secrets used"); the schema check above cannot see it."""
    defined = set(compose.get(kind, {}))
    undefined = {f"{name}: {ref}" for name, service in compose["services"].items()
                 for ref in referenced(service, kind) if ref not in defined}
    assert not undefined, f"{kind} used but not defined under the top-level `{kind}:`: {sorted(undefined)}"
    unused = defined - {ref for service in compose["services"].values() for ref in referenced(service, kind)}
    assert not unused, f"top-level {kind} no service mounts: {sorted(unused)}"


def test_every_secret_file_is_made_by_make_compose_secrets(compose: dict, tmp_path: Path) -> None:
    """What `make compose-secrets` runs, in an empty folder: every file a top-level secret or
    config names is then there (compose refuses to start on a missing one)."""
    for script, args in (("deploy/kafka/compose-init.sh", [str(tmp_path / ".data" / "compose")]),
                         ("deploy/compose-env.sh", [str(tmp_path / ".env")])):
        done = subprocess.run(["bash", str(ROOT / script), *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    files = [entry["file"] for kind in ("secrets", "configs") for entry in compose.get(kind, {}).values()
             if "file" in entry]
    assert files
    missing = [file for file in files if not (tmp_path / file).is_file()]
    assert not missing, f"not made by make compose-secrets: {missing}"


def test_each_service_is_its_own_database_role(compose: dict) -> None:
    """No service logs in as PostgreSQL's superuser or as another service: each mounts only its
    own URL (role signoff_<service>, made by deploy/postgres-init.sh at postgres' first start from
    the password secrets only postgres mounts), so a compromised console cannot touch the
    deployer's `production` or `revoked`, nor run COPY ... TO PROGRAM."""
    services = compose["services"]
    database_secrets = {name for name in compose["secrets"]
                        if name.startswith(("database-", "postgres-"))}
    for name, service in services.items():
        mounted = set(referenced(service, "secrets")) & database_secrets
        if name == "postgres":
            assert mounted == {"postgres-password", *(f"database-password-{n}" for n in REPLICATED)}
        elif name in REPLICATED:
            assert mounted == {f"database-url-{name}"}, f"{name} mounts another's database secret: {mounted}"
        else:
            assert not mounted, f"{name} has no business with the database: {mounted}"
    files = {compose["secrets"][f"database-url-{name}"]["file"] for name in REPLICATED}
    assert len(files) == len(REPLICATED), "two services given one database URL"
    postgres = services["postgres"]
    init = ROOT / "deploy" / "postgres-init.sh"
    assert ("./deploy/postgres-init.sh", "/docker-entrypoint-initdb.d/10-signoff-roles.sh", True) in mounts(postgres)
    assert os.access(init, os.X_OK), "the image sources a script that is not executable (with its set -eu)"
    text = init.read_text()
    assert "/run/secrets/database-password-" in text and "NOSUPERUSER" in text
    for name in REPLICATED:
        assert name.replace("-", "_") in text.split("for signoff_schema in ", 1)[1].split(";", 1)[0], name


def test_the_roles_script_stops_on_a_missing_password_secret_and_names_it(tmp_path: Path) -> None:
    """At postgres' first start a missing secret stops the init (no role without its password);
    psql is stood in for: nothing reaches a server here."""
    env = {**os.environ, "PSQL": "true", "POSTGRES_USER": "signoff", "POSTGRES_DB": "signoff"}
    env.pop("SIGNOFF_ROLE_PASSWORD_FILES", None)
    done = subprocess.run(["sh", str(ROOT / "deploy" / "postgres-init.sh")], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode != 0 and "/run/secrets/database-password-validator" in done.stderr
    (tmp_path / "validator").write_text("short\n")
    done = subprocess.run(["sh", str(ROOT / "deploy" / "postgres-init.sh")], capture_output=True, text=True,
                          env={**env, "SIGNOFF_ROLE_PASSWORD_FILES": f"{tmp_path}/"}, timeout=30)
    assert done.returncode != 0 and "32+ characters" in done.stderr and "short" not in done.stderr
