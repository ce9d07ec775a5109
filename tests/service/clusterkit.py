"""A throw-away Redis Cluster on loopback: three masters with one replica each, as `redis-cli --cluster
create` builds it, each node a `redis-server --cluster-enabled yes` on free ports (never 6379) in a temporary
folder; masters can be failed over (`CLUSTER FAILOVER` on the replica) or killed and started again."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.service.testkit import distinct_free_ports

NODE_TIMEOUT_MS = 1000  # how long a silent master takes to be marked failed: the failover's wait


@dataclass
class Node:
    port: int
    bus_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def info(self, section: str) -> dict[str, object]:
        with self.client() as client:
            return dict(client.info(section))

    def role(self) -> str | None:
        """The role ("master" or "slave"), or None when the node does not answer."""
        try:
            return str(self.info("replication")["role"])
        except redis.RedisError:
            return None


class LoopbackCluster:
    """Six `redis-server --cluster-enabled yes` (no persistence) made into 3 masters + 3 replicas."""

    def __init__(self, masters: int = 3) -> None:
        if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
            pytest.skip("redis-server / redis-cli are not installed")
        self.dir = Path(tempfile.mkdtemp(prefix="poselift-cluster-"))
        ports = distinct_free_ports(4 * masters)  # a port and a cluster-bus port per node, none repeated
        self.nodes = [Node(ports[2 * i], ports[2 * i + 1]) for i in range(2 * masters)]

    @property
    def url(self) -> str:
        """What `POSELIFT_REDIS_URL` takes: every node as a seed."""
        return "redis+cluster://" + ",".join(node.address for node in self.nodes)

    def start_node(self, node: Node) -> None:
        folder = self.dir / str(node.port)
        folder.mkdir(exist_ok=True)
        node.process = subprocess.Popen(
            ["redis-server", "--port", str(node.port), "--bind", "127.0.0.1", "--dir", str(folder),
             "--cluster-enabled", "yes", "--cluster-port", str(node.bus_port),
             "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
             "--cluster-replica-validity-factor", "0",  # a replica may always take over
             "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
             "--save", "", "--appendonly", "no", "--loglevel", "warning", "--logfile", "redis.log"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(lambda: node.role() is not None, 10, f"redis-server on {node.port} did not start")

    def start(self) -> None:
        for node in self.nodes:
            self.start_node(node)
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *(n.address for n in self.nodes),
             "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert created.returncode == 0, created.stdout + created.stderr
        self.wait_healthy()

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """Every live node sees `cluster_state:ok` and every master has an in-sync replica."""

        def healthy() -> bool:
            live = [n for n in self.nodes if n.process is not None]
            try:
                if any(n.client().cluster("info")["cluster_state"] != "ok" for n in live):
                    return False
                masters = [n for n in live if n.role() == "master"]
                return (
                    len(masters) == len(self.nodes) // 2
                    and all(int(str(n.info("replication")["connected_slaves"])) >= 1 for n in masters)
                    and all(
                        n.info("replication").get("master_link_status") == "up"
                        for n in live
                        if n.role() == "slave"
                    )
                )
            except redis.RedisError:
                return False

        wait_for(healthy, timeout_s, "the cluster did not become healthy")

    def flush(self) -> None:
        """Empty every master (their replicas follow)."""
        for node in self.masters():
            with node.client() as client:
                client.flushall()

    def masters(self) -> list[Node]:
        return [n for n in self.nodes if n.process is not None and n.role() == "master"]

    def replica_of(self, master: Node) -> Node:
        with master.client() as client:
            ports = [int(r[1]) for r in client.execute_command("ROLE")[2]]  # [ip, port, offset]
        return next(n for n in self.nodes if n.port in ports)

    def master_of_key(self, key: str) -> Node:
        """The node serving `key`'s slot now (CLUSTER SLOTS of a live node)."""
        with self.nodes_alive()[0].client() as client:
            slot = int(client.cluster("keyslot", key))
            ranges = client.execute_command("CLUSTER", "SLOTS")
        port = next(int(nodes[0][1]) for start, stop, *nodes in ranges if start <= slot <= stop)
        return next(n for n in self.nodes if n.port == port)

    def slots_of(self, master: Node) -> list[tuple[int, int]]:
        """The slot ranges `master` serves now."""
        with self.nodes_alive()[0].client() as client:
            ranges = client.execute_command("CLUSTER", "SLOTS")
        return [(int(start), int(stop)) for start, stop, *nodes in ranges if int(nodes[0][1]) == master.port]

    def nodes_alive(self) -> list[Node]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def manual_failover(self, master: Node) -> Node:
        """`CLUSTER FAILOVER` on `master`'s replica (no write is lost); returns the new master."""
        replica = self.replica_of(master)
        with replica.client() as client:
            client.execute_command("CLUSTER", "FAILOVER")
        wait_for(lambda: replica.role() == "master" and master.role() == "slave", 20, "no manual failover")
        wait_for(lambda: self._serves_everywhere(replica), 20, "the nodes did not learn the new master")
        return replica

    def _serves_everywhere(self, master: Node) -> bool:
        """Every live node's CLUSTER SLOTS names `master` as the master of some slots."""
        for node in self.nodes_alive():
            try:
                with node.client() as client:
                    ranges = client.execute_command("CLUSTER", "SLOTS")
            except redis.RedisError:
                return False
            if not any(int(nodes[0][1]) == master.port for _, _, *nodes in ranges):
                return False
        return True

    def kill(self, node: Node) -> None:
        """SIGKILL: a crashed master (its replica takes over after `NODE_TIMEOUT_MS`)."""
        if node.process is not None:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait(10)
            node.process = None

    def kill_master(self, master: Node) -> Node:
        """Kill `master`; wait until its replica is the master; returns it."""
        replica = self.replica_of(master)
        self.kill(master)
        wait_for(lambda: replica.role() == "master", 30, "the replica did not take over")
        wait_for(lambda: self._serves_everywhere(replica), 20, "the nodes did not learn the new master")
        return replica

    def restart(self, node: Node) -> None:
        """Start a killed node again (it rejoins from its nodes.conf, as a replica now)."""
        self.start_node(node)

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
                node.process.wait(10)
            node.process = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        return "\n".join(
            f"--- node {p.name} ---\n{(p / 'redis.log').read_text(errors='replace')}"
            for p in sorted(self.dir.iterdir())
            if (p / "redis.log").exists()
        )


def wait_for(condition: object, timeout_s: float, message: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(message)
        time.sleep(0.05)
