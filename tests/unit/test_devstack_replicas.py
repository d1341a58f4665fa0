"""`make up REPLICAS=N` (signoff.devstack --replicas N): N stacks of every service and the console,
each replica with its own HTTP ports and local files, all sharing the signing keys, the console's
session key and SIGNOFF_DATABASE_URL's PostgreSQL. No process is started here."""

from __future__ import annotations

from pathlib import Path

import pytest

from signoff.devstack import CONSOLE, PORT_VARIABLES, SERVICES, replica_stacks, signing_env

URL = "postgresql://signoff@127.0.0.1:5999/signoff?passfile=/nonexistent"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"VALIDATOR_HTTP_PORT": "8083", "POLICY_HTTP_PORT": "8084", "DEPLOYER_HTTP_PORT": "8085",
            **signing_env(tmp_path / "run" / "keys")}


def test_one_replica_is_make_up_as_it_was(tmp_path: Path, env: dict[str, str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIGNOFF_DATABASE_URL", raising=False)
    [stack] = replica_stacks(tmp_path / "run", env, 1, None)
    assert stack.services == (*SERVICES, CONSOLE) and stack.workdir == tmp_path / "run"
    assert "CONSOLE_SESSION_KEY_FILE" not in stack.env_of(CONSOLE)


def test_replicas_have_ports_and_files_of_their_own_and_share_keys_and_the_database(
    tmp_path: Path, env: dict[str, str]
) -> None:
    stacks = replica_stacks(tmp_path / "run", {**env, "SIGNOFF_DATABASE_URL": URL}, 3, None)
    assert [s.workdir for s in stacks] == [tmp_path / "run", tmp_path / "run" / "replica-2",
                                           tmp_path / "run" / "replica-3"]
    ports = [stack.env_of(service).get(variable) for stack in stacks for service, variable in PORT_VARIABLES.items()]
    given = [port for port in ports if port is not None]
    assert len(given) == len(set(given)), f"two replicas on one port: {ports}"
    assert stacks[0].env_of("validator")["VALIDATOR_HTTP_PORT"] == "8083"  # the first keeps make up's
    for name in ("POLICY_STATE_DB", "CONSOLE_INDEX_DB", "REVIEW_NOTIFIER_STATE_DB"):
        values = [stack.env_of(CONSOLE).get(name) for stack in stacks[1:]]
        assert len(set(values)) == len(values) and None not in values, name
    for variable in ("SIGNOFF_DATABASE_URL", "SIGNOFF_TRUSTED_KEYS", "CONSOLE_SESSION_KEY_FILE"):
        assert len({stack.env_of(CONSOLE)[variable] for stack in stacks}) == 1, variable
    key = Path(stacks[0].env_of(CONSOLE)["CONSOLE_SESSION_KEY_FILE"])
    assert key.stat().st_mode & 0o077 == 0, "the session key is the console's secret: mode 600"


def test_replicas_without_postgresql_are_refused(tmp_path: Path, env: dict[str, str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIGNOFF_DATABASE_URL", raising=False)
    with pytest.raises(SystemExit, match="SIGNOFF_DATABASE_URL"):
        replica_stacks(tmp_path / "run", env, 2, None)
