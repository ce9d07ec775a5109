"""Redis Cluster: its URL form and its client.

`redis+cluster://[user:password@]host:port[,host:port...][?option=value...]` (`rediss+cluster://` for TLS)
names some nodes of one cluster; the client reads the whole topology from whichever answers first, so one
live node is enough, and listing several lets a replica start while one of them is down. Options are those
of a `redis://` URL (redis-py's `from_url`); the database is always 0 (a cluster has no others).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
DEFAULT_PORT = 6379


def is_cluster_url(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEMES)


def cluster_seeds(url: str) -> list[tuple[str, int]]:
    """The (host, port) of every node a cluster URL names; ValueError when it names none or one badly."""
    netloc = urlsplit(url).netloc
    hosts = netloc.rpartition("@")[2]
    seeds = []
    for host in hosts.split(","):
        parts = urlsplit(f"//{host.strip()}")
        if not parts.hostname:
            raise ValueError(f"a cluster URL lists nodes as host:port, comma-separated; got {host!r}")
        seeds.append((parts.hostname, parts.port or DEFAULT_PORT))  # .port raises ValueError if not a port
    return seeds


def cluster_client(url: str, timeout_s: float, max_connections: int) -> RedisCluster:
    """A cluster client for `url` with bounded timeouts; each node gets `max_connections` connections at
    most (the store keeps its calls within that, so none is refused for want of one)."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    first = hosts.split(",")[0].strip()
    single = f"{parts.scheme.removesuffix('+cluster')}://{userinfo + '@' if userinfo else ''}{first}"
    single += parts.path + (f"?{parts.query}" if parts.query else "")
    return RedisCluster.from_url(
        single,
        startup_nodes=[ClusterNode(host, port) for host, port in cluster_seeds(url)[1:]],
        max_connections=max_connections,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1),  # one retry after re-reading the topology: follows a failover at once
    )
