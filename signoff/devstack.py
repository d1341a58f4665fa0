"""The four services as separate local processes: for `make up`, `make demo` and the end-to-end tests.

Each service runs as `faststream run --factory services.<name>.app:create_app`, logs to `<workdir>/logs/<name>.log`,
and is stopped with SIGTERM (graceful: the in-flight event finishes and is committed).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SERVICES = ("validator", "policy", "review_notifier", "deployer")
READY_LINE = "started successfully"  # FastStream logs it once the broker and subscribers run


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a service, a broker, a stand-in)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(self, workdir: Path, env: dict[str, str], services: tuple[str, ...] = SERVICES) -> None:
        self.workdir = workdir
        self.env = {**os.environ, **env}
        self.services = services
        self.procs: dict[str, subprocess.Popen] = {}
        (workdir / "logs").mkdir(parents=True, exist_ok=True)

    def log_path(self, service: str) -> Path:
        return self.workdir / "logs" / f"{service}.log"

    def start(self, service: str, timeout: float = 60.0) -> None:
        log_path = self.log_path(service)
        offset = log_path.stat().st_size if log_path.exists() else 0
        with open(log_path, "ab") as log:
            self.procs[service] = subprocess.Popen(
                [sys.executable, "-m", "faststream", "run", "--factory", f"services.{service}.app:create_app"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self._wait_ready(service, offset, timeout)

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
                if READY_LINE in f.read().decode(errors="replace"):
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


def main() -> None:
    """`python -m signoff.devstack WORKDIR`: run the stack in the foreground until SIGTERM/SIGINT."""
    workdir = Path(sys.argv[1] if len(sys.argv) > 1 else ".data/run")
    stack = Stack(workdir, env={})
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with stack:
        stack.start_all()
        print(f"signoff stack up: {', '.join(SERVICES)} (logs in {workdir}/logs)", flush=True)
        while not stopping:
            if crashed := [s for s, p in stack.procs.items() if p.poll() is not None]:
                print(f"service exited: {', '.join(crashed)}", file=sys.stderr, flush=True)
                break
            time.sleep(0.5)  # supervising: check the children twice a second
    print("signoff stack down", flush=True)


if __name__ == "__main__":
    main()
