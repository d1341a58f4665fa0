"""The README's interactive example, run as written: its commands, taken from README.md between
the `readme-example` markers, in one bash session, in a folder laid out as `make up` leaves the
repository (.venv, workflows/, .data/kafka/credentials, .data/run/keys, the services' default
relative paths), against the four services started as `make up` starts them (signoff.devstack, each
its own principal). Each command must exit 0, as the README says it does.

The broker is one of its own (kafka.sh, like `make up`'s), not the session's: a second set of the
four services on the session's broker would take part in every other end-to-end test. Only its
address differs from `make up`'s (KAFKA_BOOTSTRAP_SERVERS, SIGNOFF_REVIEW_URL): free ports, so a
stack a developer runs on 9092 and 8081 is left alone."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.acl import Table
from shared.admin import apply_acls, ensure_topics
from shared.signing import SUBMITTED, load_private, load_trust
from signoff import client, errors
from signoff.devstack import SERVICES, Stack, credentials_env, free_port, signing_env
from tests.kafka_broker import Cluster, local_broker

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
START, END = "<!-- readme-example:start -->", "<!-- readme-example:end -->"
RC = "@@readme-rc"


def example_commands(readme: str) -> list[str]:
    """The example's commands: the bash block between the markers, continuation lines joined,
    comments and blank lines left out."""
    assert readme.count(START) == 1 and readme.count(END) == 1, "README.md: the example's markers"
    block = readme.split(START, 1)[1].split(END, 1)[0]
    body = re.search(r"```bash\n(.*?)```", block, re.S)
    assert body, "README.md: a ```bash block between the markers"
    commands, current = [], ""
    for line in body.group(1).splitlines():
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        if current.strip() and not current.lstrip().startswith("#"):
            commands.append(current.strip())
        current = ""
    return commands


def script(commands: list[str]) -> str:
    """One bash session running each command in turn, printing its exit code after it."""
    lines = []
    for i, command in enumerate(commands):
        lines += [f"echo '{RC} begin {i}'", command, f"echo \"{RC} end {i} $?\""]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def broker() -> Iterator[Cluster]:
    with local_broker(tls=False) as cluster:
        asyncio.run(ensure_topics(cluster.admin, partitions=3))  # `make topics`
        asyncio.run(apply_acls(cluster.admin, Table()))          # `make acl`
        yield cluster


@pytest.fixture(scope="module")
def checkout(broker: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A folder laid out like the repository after `make up`, with the four services running in it."""
    here = tmp_path_factory.mktemp("readme")
    (here / ".venv").symlink_to(Path(sys.executable).parents[1])
    (here / "workflows").symlink_to(ROOT / "workflows")
    (here / ".data" / "kafka").mkdir(parents=True)
    assert broker.data_dir is not None
    (here / ".data" / "kafka" / "credentials").symlink_to(broker.data_dir / "credentials")
    review_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SIGNOFF_", "VALIDATOR_", "POLICY_",
                                                                      "REVIEW_NOTIFIER_", "DEPLOYER_"))}
    env.update({"KAFKA_BOOTSTRAP_SERVERS": broker.servers, "KAFKA_SECURITY_PROTOCOL": broker.protocol,
                "REVIEW_NOTIFIER_HTTP_PORT": str(review_port),
                "SIGNOFF_REVIEW_URL": f"http://127.0.0.1:{review_port}"})
    cwd = Path.cwd()
    os.chdir(here)  # the services' default paths (.data/...) are relative, as under `make up`
    try:
        signing = signing_env(here / ".data" / "run" / "keys")  # what `python -m signoff.devstack` makes
        stack = Stack(here / ".data" / "run", {**env, **signing}, services=SERVICES,
                      service_env=credentials_env(here / ".data" / "kafka" / "credentials"))
        stack.env = {k: v for k, v in stack.env.items() if k in env or k in signing or k.endswith("_HTTP_PORT")}
        with stack:
            stack.start_all()
            yield here, env
    finally:
        os.chdir(cwd)


@pytest.mark.timeout(600)
def test_the_readme_example_runs_as_written(checkout):
    here, env = checkout
    commands = example_commands((ROOT / "README.md").read_text())
    assert any("signoff submit" in c for c in commands) and any("rollback" in c for c in commands)
    done = subprocess.run(["bash", "-c", script(commands)], cwd=here, env=env, capture_output=True, text=True,
                          timeout=540)
    codes = dict(re.findall(rf"^{RC} end (\d+) (\d+)$", done.stdout, re.M))
    for i, command in enumerate(commands):
        assert codes.get(str(i)) == "0", (f"README command {i + 1} exited {codes.get(str(i), 'never')}: {command}\n"
                                          f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}")
    out = done.stdout
    assert out.count("=> deployed") == 2, out  # both watches
    assert "=> rolled back" in out and "no reviews waiting for you" in out, out
    assert re.search(r"churn-model at \S+: version 1\.0\.0", out), out  # status: 1.0.0 is back


def operator_env(here: Path, env: dict[str, str]) -> dict[str, str]:
    keys = here / ".data" / "run" / "keys"
    return {**env, "KAFKA_SASL_USERNAME": "operator",
            "KAFKA_SASL_PASSWORD_FILE": str(here / ".data" / "kafka" / "credentials" / "operator"),
            "SIGNOFF_SIGNING_KEY_FILE": str(keys / "operator.pem"),
            "SIGNOFF_TRUSTED_KEYS": str(keys / "trusted-keys.yaml")}


def test_a_rollback_of_a_misspelled_model_is_refused_before_anything_is_sent(checkout):
    here, env = checkout
    done = subprocess.run([".venv/bin/signoff", "rollback", "churn-modle", "--reason", "typo", "--wait"], cwd=here,
                          env=operator_env(here, env), capture_output=True, text=True, timeout=120)
    assert done.returncode == errors.FAILED, done.stderr
    assert "'churn-modle' was never deployed" in done.stderr and "did you mean churn-model?" in done.stderr
    assert done.stdout == ""  # no operation id: nothing was sent


def test_a_rollback_the_deployer_dead_letters_ends_refused_at_once(checkout, broker):
    """Sent anyway (another client, or a model the deployer never deployed though the topics say
    so): `rollback --wait` follows the operation into the dead-letter topic and reports the refusal."""
    here, env = checkout
    keys = here / ".data" / "run" / "keys"
    keyring = load_trust(keys / "trusted-keys.yaml", accept_unsigned=(SUBMITTED,))
    signer = load_private(keys / "operator.pem", None, file_variable="F", env_variable="E")
    operator = client.identity(signer, keyring, "operator")
    kafka = broker.access("operator")

    async def run() -> list[object]:
        event = await client.request_rollback(kafka, "never-deployed-model", None, operator, "to see it refused")
        return [item async for item in client.follow_operation(kafka, event.submission_id, 60, keyring)]

    *_, last = asyncio.run(run())
    assert isinstance(last, client.DeadLettered), last
    assert last.topic == "rollback.requested.dlq" and "never deployed" in last.reason
