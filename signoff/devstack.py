"""The four services as separate local processes: for `make up`, `make demo` and the end-to-end tests.

Each service runs as `faststream run --factory services.<name>.app:create_app`, logs to `<workdir>/logs/<name>.log`,
and is stopped with SIGTERM (graceful: the in-flight event finishes and is committed). Each connects
to Kafka as its own principal (shared/acl.py): `service_env` gives each its KAFKA_SASL_* variables
(`credentials_env` reads them from kafka.sh's <data dir>/credentials).

`python -m signoff.devstack WORKDIR --replicas N` (`make up REPLICAS=N`) runs N replicas of each
service and of the console, as N stacks side by side: replica 1 in WORKDIR on `make up`'s ports,
replica i in WORKDIR/replica-i on free ports with SQLite files of its own. They share one consumer
group per service, the signing keys, and the state in PostgreSQL: with `--postgres` (`make up`
starts deploy/postgres.sh's), each service logs in as its own role to its own schema
(`deploy/postgres.sh url SERVICE`; the replicas of one service share it), so that no service can
read or change another's state; otherwise on the server SIGNOFF_DATABASE_URL names, as one user.
The console replicas share their sessions there, sealed with one session key
(CONSOLE_SESSION_KEY_FILE, made in WORKDIR/keys), and the review-notifier replicas the token file
(one file on this machine).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from shared import acl
from shared.kafka import KafkaAccess, Protocol, read_password_file

SERVICES = ("validator", "policy", "review_notifier", "deployer")
POSTGRES_SH = Path(__file__).resolve().parents[1] / "deploy" / "postgres.sh"
PRINCIPALS = {"validator": "validator", "policy": "policy", "review_notifier": "review-notifier",
              "deployer": "deployer"}  # shared/acl.py SERVICE_OF_MODULE, without importing the services
# Who a process is on Kafka: a service given its own principal keeps none of these from the stack.
_IDENTITY = ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "KAFKA_SASL_PASSWORD_FILE")
READY_LINE = "started successfully"  # FastStream logs it once the broker and subscribers run
# /healthz, /readyz and /metrics of the services without an API of their own (`make up`'s ports;
# any other stack takes free ones, so stacks side by side never collide).
HTTP_PORTS = {"VALIDATOR_HTTP_PORT": 8083, "POLICY_HTTP_PORT": 8084, "DEPLOYER_HTTP_PORT": 8085}
# The web console is no FastStream app: it runs as `python -m services.console` (uvicorn), ready
# once uvicorn has run its start-up (the audit index caught up from the topics).
CONSOLE = "console"
COMMANDS = {CONSOLE: ("-m", "services.console")}
READY_LINES = {CONSOLE: "Application startup complete"}
# Each HTTP server's port variable: a replica beyond the first takes free ones.
PORT_VARIABLES = {"validator": "VALIDATOR_HTTP_PORT", "policy": "POLICY_HTTP_PORT",
                  "review_notifier": "REVIEW_NOTIFIER_HTTP_PORT", "deployer": "DEPLOYER_HTTP_PORT",
                  CONSOLE: "CONSOLE_HTTP_PORT"}
# `make up`'s ports of the review API and the console (their settings' defaults).
DEFAULT_PORTS = {"REVIEW_NOTIFIER_HTTP_PORT": 8081, "CONSOLE_HTTP_PORT": 8082, **HTTP_PORTS}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a service, a broker, a stand-in)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def signing_env(folder: Path, cli_as: str | None = "pipeline") -> dict[str, str]:
    """Each service's <PREFIX>SIGNING_KEY_FILE and SIGNOFF_TRUSTED_KEYS, with the keys made in
    `folder` the first time (`signoff keys init`; kept for the next start), and the key `signoff`
    signs with (SIGNOFF_SIGNING_KEY_FILE: the pipeline's, or `cli_as`; the operator's is beside)."""
    from signoff.keys_cli import TRUST_FILE, init

    folder = folder.resolve()
    files = init(folder)
    env = {f"{service.upper()}_SIGNING_KEY_FILE": str(files[principal]) for service, principal in PRINCIPALS.items()}
    env["SIGNOFF_TRUSTED_KEYS"] = str(folder / TRUST_FILE)
    if cli_as is not None:
        env["SIGNOFF_SIGNING_KEY_FILE"] = str(files[cli_as])
    return env


def credentials_env(folder: Path) -> dict[str, dict[str, str]]:
    """Each service's KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD_FILE, from a folder of password
    files named after the principals (kafka.sh's <data dir>/credentials, compose's secrets)."""
    return {service: {"KAFKA_SASL_USERNAME": principal, "KAFKA_SASL_PASSWORD_FILE": str(folder / principal)}
            for service, principal in PRINCIPALS.items()}


# Every principal kafka.sh gives a password to (besides its own broker and controller).
PRINCIPALS_ALL = (acl.ADMIN, *acl.SERVICES, acl.PIPELINE, acl.OPERATOR, acl.CONSOLE)


@dataclass(frozen=True)
class Cluster:
    """A Kafka cluster and the passwords of its principals: `access(principal)` is the cluster as
    that principal (tests, benchmarks, the demo)."""
    servers: str
    protocol: Protocol
    passwords: dict[str, SecretStr] = field(repr=False)
    cafile: Path | None = None
    data_dir: Path | None = None  # a local broker's (kafka.sh), for what restarts it or adds users
    replicas: int = 1  # brokers a topic's partitions are copied to: 3 on kafka.sh's cluster

    @property
    def secured(self) -> bool:
        return self.protocol != "PLAINTEXT"

    def access(self, principal: str) -> KafkaAccess:
        """The cluster as `principal` (admin, validator, ..., pipeline, operator)."""
        if not self.secured:
            return KafkaAccess(bootstrap_servers=self.servers, security_protocol="PLAINTEXT")
        if principal not in self.passwords:
            raise KeyError(f"no password for {principal!r} (known: {', '.join(sorted(self.passwords))})")
        return KafkaAccess(bootstrap_servers=self.servers, security_protocol=self.protocol,
                           sasl_username=principal, sasl_password=self.passwords[principal], ssl_cafile=self.cafile)

    @property
    def admin(self) -> KafkaAccess:
        return self.access(acl.ADMIN)

    def service_env(self, module: str) -> dict[str, str]:
        """The KAFKA_* variables of service `module` (services/<module>), as its own principal."""
        return self.access(acl.SERVICE_OF_MODULE[module]).env()

    def services_env(self) -> dict[str, dict[str, str]]:
        """`Stack(..., service_env=cluster.services_env())`: every service as its own principal,
        checking the topics against this cluster's replication (topic_env)."""
        return {module: {**self.service_env(module), **self.topic_env()} for module in SERVICES}

    def topic_env(self) -> dict[str, str]:
        """SIGNOFF_TOPIC_* for this cluster: 1 replica on one broker; on three, 3 replicas with 2 in
        sync, so an acknowledged write survives the loss of any one broker and writes go on without it."""
        return {"SIGNOFF_TOPIC_REPLICATION_FACTOR": str(self.replicas),
                "SIGNOFF_TOPIC_MIN_INSYNC_REPLICAS": str(min(self.replicas, 2))}


def passwords_in(folder: Path, names: tuple[str, ...] = PRINCIPALS_ALL) -> dict[str, SecretStr]:
    """The passwords of `names` found in `folder` (one file per principal, as kafka.sh writes them)."""
    return {name: read_password_file(folder / name) for name in names if (folder / name).is_file()}


def local_cluster(port: int, data_dir: Path, tls: bool = False) -> Cluster:
    """The Cluster of the broker kafka.sh runs from `data_dir` on 127.0.0.1:`port`."""
    return Cluster(f"127.0.0.1:{port}", "SASL_SSL" if tls else "SASL_PLAINTEXT",
                   passwords_in(data_dir / "credentials"),
                   data_dir / "certs" / "ca.pem" if tls else None, data_dir)


def local_kafka_cluster(ports: Sequence[int], data_dir: Path, tls: bool = False) -> Cluster:
    """The Cluster of the three nodes `kafka.sh cluster-up` runs from `data_dir` (its
    KAFKA_CLUSTER_DIR) on 127.0.0.1:`ports`; signoff.kafka_cluster starts, kills and restarts them."""
    return Cluster(",".join(f"127.0.0.1:{port}" for port in ports), "SASL_SSL" if tls else "SASL_PLAINTEXT",
                   passwords_in(data_dir / "credentials"),
                   data_dir / "certs" / "ca.pem" if tls else None, data_dir, replicas=len(ports))


def as_principal(env: Mapping[str, str], folder: Path, principal: str) -> dict[str, str]:
    """`env` with the Kafka identity of `principal` instead of any other (its password file in
    `folder`): for a `signoff` command run as a pipeline or an operator."""
    return {**{k: v for k, v in env.items() if k not in _IDENTITY},
            "KAFKA_SASL_USERNAME": principal, "KAFKA_SASL_PASSWORD_FILE": str(folder / principal)}


class Stack:
    def __init__(self, workdir: Path, env: dict[str, str], services: tuple[str, ...] = SERVICES,
                 service_env: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.workdir = workdir
        self.env = {**os.environ, **env}
        for variable in HTTP_PORTS:
            self.env.setdefault(variable, str(free_port()))
        if "SIGNOFF_TRUSTED_KEYS" not in self.env:  # no keys given: the stack's own, made once
            self.env = {**signing_env(workdir / "keys", cli_as=None), **self.env}
        self.services = services
        self.service_env = {name: dict(extra) for name, extra in (service_env or {}).items()}
        self.procs: dict[str, subprocess.Popen] = {}
        (workdir / "logs").mkdir(parents=True, exist_ok=True)

    def log_path(self, service: str) -> Path:
        return self.workdir / "logs" / f"{service}.log"

    def start(self, service: str, timeout: float = 60.0) -> None:
        log_path = self.log_path(service)
        offset = log_path.stat().st_size if log_path.exists() else 0
        with open(log_path, "ab") as log:
            self.procs[service] = subprocess.Popen(
                [sys.executable, *COMMANDS.get(service, ("-m", "faststream", "run", "--factory",
                                                         f"services.{service}.app:create_app"))],
                env=self.env_of(service), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self._wait_ready(service, offset, timeout)

    def env_of(self, service: str) -> dict[str, str]:
        """The environment `service` runs with: the stack's, then its own (its Kafka principal)."""
        extra = self.service_env.get(service, {})
        env = dict(self.env)
        if "KAFKA_SASL_USERNAME" in extra:  # its own principal: nothing of another one's
            for name in _IDENTITY:
                if name not in extra:
                    env.pop(name, None)
        return {**env, **extra}

    def start_all(self, timeout: float = 60.0) -> None:
        for service in self.services:
            self.start(service, timeout)

    def stop(self, service: str, timeout: float = 30.0) -> int | None:
        proc = self.procs.pop(service, None)
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def kill(self, service: str) -> None:
        """SIGKILL: no shutdown, no final commit, like a crashed container."""
        proc = self.procs.pop(service)
        proc.kill()
        proc.wait()

    def stop_all(self) -> None:
        for service in reversed(list(self.procs)):
            self.stop(service)

    def _wait_ready(self, service: str, offset: int, timeout: float) -> None:
        proc, log_path = self.procs[service], self.log_path(service)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(log_path, "rb") as f:
                f.seek(offset)
                if READY_LINES.get(service, READY_LINE) in f.read().decode(errors="replace"):
                    return
            if proc.poll() is not None:
                break
            time.sleep(0.1)  # polling a log file for a line, bounded by the deadline
        tail = log_path.read_text(errors="replace")[-3000:]
        self.stop(service)
        raise RuntimeError(f"{service} did not start within {timeout}s; log tail:\n{tail}")

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def replica_env(workdir: Path) -> dict[str, str]:
    """What a replica beyond the first has of its own: its HTTP ports and local files (its SQLite
    state, used only where SIGNOFF_DATABASE_URL is not; the console's audit index; downloads)."""
    workdir.mkdir(parents=True, exist_ok=True)
    return {**{variable: str(free_port()) for variable in PORT_VARIABLES.values()},
            "VALIDATOR_STATE_DB": str(workdir / "validator.db"), "POLICY_STATE_DB": str(workdir / "policy.db"),
            "REVIEW_NOTIFIER_STATE_DB": str(workdir / "reviews.db"), "DEPLOYER_STATE_DB": str(workdir / "deployer.db"),
            "VALIDATOR_DOWNLOAD_DIR": str(workdir / "downloads" / "validator"),
            "DEPLOYER_DOWNLOAD_DIR": str(workdir / "downloads" / "deployer"),
            "CONSOLE_INDEX_DB": str(workdir / "console-audit.sqlite")}


def session_key_file(folder: Path) -> Path:
    """The console replicas' shared session key (CONSOLE_SESSION_KEY_FILE), made once, mode 600."""
    path = folder / "console-session.key"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    return path


def postgres_urls(script: Path = POSTGRES_SH) -> dict[str, str]:
    """Each service's own URL on deploy/postgres.sh's server (`url SERVICE`): its role, its password
    file, its schema. The script made the roles at `up`."""
    def url(service: str) -> str:
        done = subprocess.run(["bash", str(script), "url", service], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise SystemExit(f"no database URL for {service}: {done.stderr.strip()} (deploy/postgres.sh up first)")
        return done.stdout.strip()
    return {service: url(service) for service in (*SERVICES, CONSOLE)}


def replica_stacks(workdir: Path, env: Mapping[str, str], replicas: int,
                   service_env: Mapping[str, Mapping[str, str]] | None,
                   database_urls: Mapping[str, str] | None = None) -> list[Stack]:
    """`replicas` stacks of every service and the console: the first in `workdir` with `env`'s
    ports, each other one in workdir/replica-i with its own (replica_env). `database_urls`: each
    service's own SIGNOFF_DATABASE_URL (postgres_urls), shared by its replicas only; without it,
    every service uses the one SIGNOFF_DATABASE_URL, if any."""
    shared = dict(env)
    services = (*SERVICES, CONSOLE)
    if database_urls:
        missing = [service for service in services if not database_urls.get(service)]
        if missing:
            raise SystemExit(f"no database URL for {', '.join(missing)}: each service needs its own")
        service_env = {service: {**(service_env or {}).get(service, {}),
                                 "SIGNOFF_DATABASE_URL": database_urls[service]} for service in services}
    database = database_urls or env.get("SIGNOFF_DATABASE_URL") or os.environ.get("SIGNOFF_DATABASE_URL")
    if replicas > 1 and not database:
        raise SystemExit("replicas share their state in PostgreSQL: set SIGNOFF_DATABASE_URL "
                         "(`make up REPLICAS=2` starts deploy/postgres.sh and gives each service its own role)")
    if database:  # the console's sessions go there too, sealed with the key its replicas share
        shared["CONSOLE_SESSION_KEY_FILE"] = str(session_key_file(workdir / "keys"))
    return [Stack(workdir, shared, services=services, service_env=service_env),
            *(Stack(workdir / f"replica-{i}", {**shared, **replica_env(workdir / f"replica-{i}")}, services=services,
                    service_env=service_env) for i in range(2, replicas + 1))]


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m signoff.devstack WORKDIR [--replicas N]`: run the stack in the foreground until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m signoff.devstack")
    parser.add_argument("workdir", nargs="?", default=".data/run", type=Path)
    parser.add_argument("--replicas", type=int, default=1, choices=range(1, 9), metavar="N",
                        help="replicas of each service (1-8); more than 1 needs SIGNOFF_DATABASE_URL or --postgres")
    parser.add_argument("--postgres", action="store_true",
                        help="state in deploy/postgres.sh's server, each service as its own role in its own schema")
    args = parser.parse_args(argv)
    workdir: Path = args.workdir
    # `make up`: the services as their own principals, with the passwords kafka.sh made.
    credentials = Path(os.environ.get("KAFKA_CREDENTIALS_DIR", ".data/kafka/credentials")).resolve()
    plaintext = os.environ.get("KAFKA_SECURITY_PROTOCOL") == "PLAINTEXT"
    signing = signing_env(workdir / "keys")  # generated once; the operator's key is beside them
    service_env = None if plaintext else {**credentials_env(credentials), CONSOLE: {
        "KAFKA_SASL_USERNAME": acl.CONSOLE, "KAFKA_SASL_PASSWORD_FILE": str(credentials / acl.CONSOLE)}}
    ports = {variable: str(port) for variable, port in HTTP_PORTS.items()}  # `make up`'s fixed ones
    database_urls = postgres_urls() if args.postgres else None
    stacks = replica_stacks(workdir, {**ports, **signing}, args.replicas, service_env, database_urls)
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        for stack in stacks:
            stack.start_all()
        print(f"signoff stack up: {', '.join(stacks[0].services)} (logs in {workdir}/logs); the web console on "
              "http://127.0.0.1:8082 (sign in with a token from `signoff token create YOU`)", flush=True)
        print("health and metrics (/healthz, /readyz, /metrics): validator :8083, policy :8084, "
              "review-notifier :8081, deployer :8085", flush=True)
        for i, stack in enumerate(stacks[1:], start=2):
            own = ", ".join(f"{service.replace('_', '-')} :{stack.env_of(service)[variable]}"
                            for service, variable in PORT_VARIABLES.items())
            print(f"replica {i} (logs in {stack.workdir}/logs): {own}", flush=True)
        print(f"signing keys and trust file in {workdir}/keys: for signoff, SIGNOFF_TRUSTED_KEYS="
              f"{signing['SIGNOFF_TRUSTED_KEYS']} and SIGNOFF_SIGNING_KEY_FILE=<pipeline's or operator's key>",
              flush=True)
        while not stopping:
            crashed = [f"{service}" + (f" (replica {i})" if i > 1 else "")
                       for i, stack in enumerate(stacks, start=1) for service, proc in stack.procs.items()
                       if proc.poll() is not None]
            if crashed:
                print(f"service exited: {', '.join(crashed)}", file=sys.stderr, flush=True)
                break
            time.sleep(0.5)  # supervising: check the children twice a second
    finally:
        for stack in reversed(stacks):
            stack.stop_all()
    print("signoff stack down", flush=True)


if __name__ == "__main__":
    main()
