"""A three-node Kafka cluster on loopback, run by deploy/kafka/kafka.sh's cluster-* commands: for the
tests, the benchmarks and the replicas' end-to-end run. `LocalCluster.fresh(folder)` takes free
ports and a folder of its own; `up()`, `kill(node)`, `start(node)`, `down()`; `.cluster` is the
signoff.devstack.Cluster (its principals' access, `services_env()` and `topic_env()` with 3
replicas and min.insync.replicas 2).

Each node is a combined broker+controller (kafka.sh's cluster.sh says why); node N's client port
is `ports[N - 1]` and its node id, the broker id Kafka reports as a partition's leader, is N.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from signoff.devstack import Cluster, free_port, local_kafka_cluster

KAFKA_SH = Path(__file__).resolve().parents[1] / "deploy" / "kafka" / "kafka.sh"
NODES = (1, 2, 3)
# A node's start waits for the quorum and the metadata (KAFKA_START_TIMEOUT, 90 s by default); a
# command that outlives that and a stop's SIGKILL fallback has hung.
COMMAND_TIMEOUT = 240.0


class LocalCluster:
    """The nodes of one KAFKA_CLUSTER_DIR: their ports, the commands that run them, the Cluster."""

    def __init__(self, data_dir: Path, ports: Sequence[int], controller_ports: Sequence[int],
                 tls: bool = False) -> None:
        if len(ports) != len(NODES) or len(controller_ports) != len(NODES):
            raise ValueError(f"ports and controller_ports: {len(NODES)} each (one per node)")
        self.data_dir = data_dir
        self.ports = tuple(ports)
        self.controller_ports = tuple(controller_ports)
        self.tls = tls
        self.cluster: Cluster = local_kafka_cluster(self.ports, data_dir, tls)

    @classmethod
    def fresh(cls, data_dir: Path, tls: bool = False) -> LocalCluster:
        """A cluster on free ports (nothing listens on them now) in `data_dir`."""
        return cls(data_dir, [free_port() for _ in NODES], [free_port() for _ in NODES], tls)

    def env(self) -> dict[str, str]:
        """kafka.sh's variables for this cluster (secured: SASL/SCRAM, SASL_SSL when `tls`)."""
        return {**os.environ, "KAFKA_CLUSTER_DIR": str(self.data_dir),
                "KAFKA_CLUSTER_PORTS": " ".join(map(str, self.ports)),
                "KAFKA_CLUSTER_CONTROLLER_PORTS": " ".join(map(str, self.controller_ports)),
                "KAFKA_TLS": "1" if self.tls else "0", "KAFKA_PLAINTEXT": "0"}

    def run(self, command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`kafka.sh cluster-<command> ARGS`; raises with its output when it fails and `check`."""
        done = subprocess.run(["bash", str(KAFKA_SH), f"cluster-{command}", *args], env=self.env(),
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        if check and done.returncode != 0:
            raise RuntimeError(f"kafka.sh cluster-{command} {' '.join(args)} failed ({done.returncode}):\n"
                               f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
        return done

    def up(self) -> Cluster:
        """Start every node that is not running; returns once all three answer as the admin."""
        self.run("up")
        # Read after `up`: a fresh folder has its passwords only once kafka.sh made them.
        self.cluster = local_kafka_cluster(self.ports, self.data_dir, self.tls)
        return self.cluster

    def kill(self, node: int) -> None:
        """SIGKILL node `node` (1-3): its broker and its controller vote are gone, as in a crash."""
        self.run("kill", str(self._checked(node)))

    def start(self, node: int) -> None:
        """Start node `node` again; returns once it answers (it then catches up as a follower)."""
        self.run("start", str(self._checked(node)))

    def down(self) -> None:
        self.run("down", check=False)

    def reset(self) -> None:
        """Stop every node and delete the folder (topics, messages, passwords)."""
        self.run("reset", check=False)

    @staticmethod
    def _checked(node: int) -> int:
        if node not in NODES:
            raise ValueError(f"node {node}: one of {', '.join(map(str, NODES))}")
        return node


@contextmanager
def throwaway_cluster(data_dir: Path, tls: bool = False) -> Iterator[LocalCluster]:
    """A fresh cluster on free ports in `data_dir`, stopped and deleted on the way out."""
    cluster = LocalCluster.fresh(data_dir, tls)
    cluster.reset()
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.reset()
