"""One PostgreSQL role and schema per service (deploy/postgres-init.sh, run by deploy/postgres.sh up
here and by the postgres image in compose): each service's stores open on its own URL, and no
service can read, change or drop another's tables, run programs on the server (COPY ... TO
PROGRAM: superuser only), or create anything outside its schema. On deploy/postgres.sh's own
throw-away cluster, since it is that script's roles under test."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from services.deployer.rollout import Release
from services.deployer.state import StateStore
from services.policy.state import PolicyStore
from services.review_notifier.state import ReviewStore
from shared.workflow.schema import DeployInputs
from tests.unit import factories as f

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_SH = ROOT / "deploy" / "postgres.sh"
SERVICES = ("validator", "policy", "review_notifier", "deployer", "console")


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, str]]:
    """deploy/postgres.sh up in a folder of its own; its environment (POSTGRES_DATA_DIR)."""
    folder = Path(tempfile.mkdtemp(prefix="signoff-roles-"))
    env = {**os.environ, "POSTGRES_DATA_DIR": str(folder / "data")}
    env.pop("POSTGRES_PORT", None)
    try:
        os.chmod(folder, 0o711)  # run as root, the server runs as `postgres` and must get through
        subprocess.run(["bash", str(POSTGRES_SH), "up"], env=env, check=True, timeout=300, capture_output=True)
        yield env
    finally:
        subprocess.run(["bash", str(POSTGRES_SH), "down"], env=env, check=False, timeout=120, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def url(env: dict[str, str], service: str = "") -> str:
    done = subprocess.run(["bash", str(POSTGRES_SH), "url", *([service] if service else [])], env=env,
                          check=True, capture_output=True, text=True, timeout=30)
    return done.stdout.strip()


def test_each_service_logs_in_as_its_own_role_to_its_own_schema(cluster: dict[str, str]) -> None:
    for service in SERVICES:
        with psycopg.connect(url(cluster, service), autocommit=True) as conn:
            user, schema, superuser = conn.execute(
                "SELECT current_user, current_schema(), rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
        assert (user, schema, superuser) == (f"signoff_{service}", service, False)


def test_the_stores_open_on_their_roles_and_no_service_reaches_another(cluster: dict[str, str]) -> None:
    """What the attacker review found: the policy's start dropped the deployer's `production` when
    both shared one schema as the superuser. Now each is on its own, and a compromised policy (or
    console) is refused everything outside its schema."""
    deployer = StateStore(url(cluster, "deployer"))
    policy = PolicyStore(url(cluster, "policy"))
    reviews = ReviewStore(url(cluster, "review_notifier"))
    try:
        cause = f.submitted()
        deployer.save_release(Release(submission_id=cause.submission_id, candidate=cause.submission.candidate,
                                      approval=f.decided(cause), deploy=DeployInputs()))
        deployer.promote("fraud-detector", cause.submission_id)
        policy.record_decision(cause.submission_id, uuid.uuid4())
        PolicyStore(url(cluster, "policy")).close()  # a policy restart
        assert deployer.production("fraud-detector").submission_id == cause.submission_id
        attempts = [(policy, "SELECT * FROM deployer.production"), (policy, "DELETE FROM deployer.revoked"),
                    (policy, "DROP TABLE deployer.production"), (policy, "SELECT * FROM review_notifier.review"),
                    (policy, "COPY (SELECT 1) TO PROGRAM 'true'"), (policy, "CREATE TABLE public.stash (x int)"),
                    (policy, "CREATE SCHEMA stash"), (deployer, "UPDATE policy.decided SET event_id = 'x'")]
        for store, attempt in attempts:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                store.db.execute(attempt)
        assert policy.has_decided(cause.submission_id)
        assert reviews.db.execute("SELECT current_schema()").fetchone() == ("review_notifier",)
    finally:
        for store in (deployer, policy, reviews):
            store.close()


def test_up_again_keeps_the_roles_their_passwords_and_their_data(cluster: dict[str, str]) -> None:
    store = StateStore(url(cluster, "deployer"))
    store.db.execute("INSERT INTO revoked VALUES (?, ?) ON CONFLICT DO NOTHING", ("sha256:kept", "test"))
    store.close()
    subprocess.run(["bash", str(POSTGRES_SH), "up"], env=cluster, check=True, timeout=300, capture_output=True)
    store = StateStore(url(cluster, "deployer"))
    try:
        assert store.db.execute("SELECT reason FROM revoked WHERE what = 'sha256:kept'").fetchone() == ("test",)
    finally:
        store.close()


def test_the_service_urls_name_no_password(cluster: dict[str, str]) -> None:
    data = Path(cluster["POSTGRES_DATA_DIR"])
    for service in SERVICES:
        password = (data / "roles" / f"password-{service.replace('_', '-')}").read_text().strip()
        assert len(password) >= 32 and password not in url(cluster, service)
        assert (data / "roles" / f"password-{service.replace('_', '-')}").stat().st_mode & 0o077 == 0
    with pytest.raises(subprocess.CalledProcessError):
        url(cluster, "nobody")
