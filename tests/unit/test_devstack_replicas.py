"""`make up REPLICAS=N` (signoff.devstack --replicas N): N stacks of every service and the console,
each replica with its own HTTP ports and local files, all sharing the signing keys, the console's
session key and SIGNOFF_DATABASE_URL's PostgreSQL. No process is started here."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from signoff.devstack import CONSOLE, PORT_VARIABLES, SERVICES, postgres_urls, replica_stacks, signing_env

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


def test_make_up_gives_each_service_its_own_role_shared_by_its_replicas_only(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--postgres` (`make up REPLICAS=N`): each service's URL from `deploy/postgres.sh url SERVICE`
    (its role, its password file, its schema), the same for its replicas, another for every other
    service; the one SIGNOFF_DATABASE_URL of the environment, if any, reaches none of them."""
    data = tmp_path / "postgres"
    (data / "roles").mkdir(parents=True)
    (data / "port").write_text("5999\n")
    for service in (*SERVICES, CONSOLE):  # what `postgres.sh up` leaves: one password file per role
        (data / "roles" / f"{service.replace('_', '-')}.passfile").write_text("127.0.0.1:*:signoff:x:y\n")
    monkeypatch.setenv("POSTGRES_DATA_DIR", str(data))
    monkeypatch.setenv("SIGNOFF_DATABASE_URL", URL)
    urls = postgres_urls()
    stacks = replica_stacks(tmp_path / "run", env, 2, None, urls)
    for service in (*SERVICES, CONSOLE):
        [url] = {stack.env_of(service)["SIGNOFF_DATABASE_URL"] for stack in stacks}
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        assert (parts.username, parts.password, parts.port) == (f"signoff_{service}", None, 5999), url
        assert query["options"] == [f"-csearch_path={service}"]
        assert query["passfile"] == [str(data / "roles" / f"{service.replace('_', '-')}.passfile")]
    assert len({stacks[0].env_of(service)["SIGNOFF_DATABASE_URL"] for service in (*SERVICES, CONSOLE)}) == 5
    assert "CONSOLE_SESSION_KEY_FILE" in stacks[1].env_of(CONSOLE)
    with pytest.raises(SystemExit, match="console"):
        replica_stacks(tmp_path / "run", env, 2, None, {k: v for k, v in urls.items() if k != CONSOLE})
    (data / "roles" / "deployer.passfile").unlink()
    with pytest.raises(SystemExit, match="deployer"):
        postgres_urls()
