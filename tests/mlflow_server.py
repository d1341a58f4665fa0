"""A real MLflow tracking server for the tests: `mlflow server` with a SQLite backend in a temporary
folder and its artifact root on the S3 server of tests/s3_server.py, on a free port of 127.0.0.1,
stopped at the end.

Artifacts are not served through MLflow (`--no-serve-artifacts`): clients write the model files
to `s3://<bucket>/...` themselves, so a model version's download URI is an s3:// location that
Signoff's s3:// source reads (with `--artifacts-destination` it would be `mlflow-artifacts:/...`,
readable only through MLflow). Webhooks may call 127.0.0.1 over http (MLflow refuses private
addresses and plain http by default; a test bridge listens on the loopback), and the server looks
up webhooks every second instead of caching them for a minute, so a webhook registered by a test
is called for the next model version.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from signoff.devstack import free_port
from tests.s3_server import S3Server


@dataclass(frozen=True)
class MlflowServer:
    tracking_uri: str
    bucket: str  # the artifact root's bucket on `s3`
    s3: S3Server

    def env(self) -> dict[str, str]:
        """What an MLflow client (the test, `signoff submit --mlflow`, the bridge) needs: the
        tracking URI, and the S3 endpoint and credentials to write and read the model files."""
        return {"MLFLOW_TRACKING_URI": self.tracking_uri, "MLFLOW_DISABLE_TELEMETRY": "true", **self.s3.env()}


@contextmanager
def mlflow_server(s3: S3Server, workdir: Path, timeout: float = 90.0) -> Iterator[MlflowServer]:
    """Start `mlflow server` (its bucket made first on `s3`) and wait until /health answers
    (deadline `timeout`: the first start migrates the SQLite schema, which takes a while)."""
    workdir.mkdir(parents=True, exist_ok=True)
    bucket = f"mlflow-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=bucket)
    port = free_port()
    env = {**os.environ, **s3.env(),
           "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true", "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
           "MLFLOW_WEBHOOK_CACHE_TTL": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
           # Webhook secrets are stored encrypted with this key: fixed for the server's life.
           "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode()}
    exe = Path(sys.executable).with_name("mlflow")
    log = open(workdir / "mlflow-server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(exe), "server", "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
         "--default-artifact-root", f"s3://{bucket}/", "--no-serve-artifacts",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    server = MlflowServer(f"http://127.0.0.1:{port}", bucket, s3)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {process.returncode}; see "
                                   f"{workdir / 'mlflow-server.log'}")
            try:
                if httpx.get(f"{server.tracking_uri}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"mlflow server did not answer on port {port} in {timeout} s; see "
                                   f"{workdir / 'mlflow-server.log'}")
            time.sleep(0.2)  # polling a starting process, bounded by the deadline
        yield server
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
