"""A real S3 API server for the tests: moto in server mode (`moto_server`), on a free port of
127.0.0.1, in its own process, stopped at the end. Clients reach it as they would reach MinIO or
AWS: an endpoint URL and credentials (moto accepts any; the tests use fixed ones)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from signoff.devstack import free_port

ACCESS_KEY = "signoff-test"
SECRET_KEY = "signoff-test-secret"  # noqa: S105 - moto's, not a real secret
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str

    def env(self) -> dict[str, str]:
        """The standard AWS variables a client (boto3, the AWS CLI, MLflow) reads."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL_S3": self.endpoint_url,
                "MLFLOW_S3_ENDPOINT_URL": self.endpoint_url}

    def client(self):  # noqa: ANN201 - boto3's client type is generated at run time
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION)


@contextmanager
def s3_server(log: Path | None = None, timeout: float = 30.0) -> Iterator[S3Server]:
    """Start `moto_server` and wait until it answers (deadline `timeout`)."""
    port = free_port()
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    exe = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=out,
                               stderr=subprocess.STDOUT, env={**os.environ})
    server = S3Server(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {process.returncode}" + (f" (see {log})" if log else ""))
            try:
                httpx.get(f"{server.endpoint_url}/moto-api/", timeout=1.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"moto_server did not answer on port {port} in {timeout} s") from None
                time.sleep(0.1)  # polling a starting process, bounded by the deadline
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if out is not subprocess.DEVNULL:
            out.close()
