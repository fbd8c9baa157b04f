"""Settings for server.cluster (env vars and `abrar serve` flags)."""
from __future__ import annotations

from dataclasses import dataclass

from server.settings import setting


@dataclass(frozen=True)
class ClusterConfig:
    database_url: str | None = setting(
        None, "ABRAR_DATABASE_URL",
        "PostgreSQL database shared by several nodes (postgresql://user:password@host:5432/abrar); "
        "unset: one node keeping its state in SQLite in DATA_DIR", secret=True)
    node_id: str = setting("", "ABRAR_NODE_ID", "this node's name in the cluster (default: host name:port)")
    node_url: str = setting("", "ABRAR_NODE_URL",
                            "URL where other nodes and redirected clients reach this node "
                            "(default: http://HOST:PORT, with the host name when HOST is 0.0.0.0)")
    heartbeat_s: float = setting(2.0, "ABRAR_CLUSTER_HEARTBEAT_S",
                                 "how often a node reports itself alive and looks for work left by dead nodes")
    node_timeout_s: float = setting(8.0, "ABRAR_CLUSTER_NODE_TIMEOUT_S",
                                    "a node silent this long is dead: another node takes its cameras over")
    job_failover_s: float = setting(30.0, "ABRAR_CLUSTER_JOB_FAILOVER_S",
                                    "a node silent this long is dead for its jobs: they run again on another node")

    def __post_init__(self) -> None:
        if self.database_url and not self.database_url.startswith(("postgresql://", "postgres://")):
            raise ValueError("ABRAR_DATABASE_URL must be a PostgreSQL URL such as "
                             "postgresql://user:password@host:5432/abrar (unset it for SQLite)")
        if self.heartbeat_s <= 0:
            raise ValueError(f"ABRAR_CLUSTER_HEARTBEAT_S must be positive, not {self.heartbeat_s}")
        for name, value in (("ABRAR_CLUSTER_NODE_TIMEOUT_S", self.node_timeout_s),
                            ("ABRAR_CLUSTER_JOB_FAILOVER_S", self.job_failover_s)):
            if value < 2 * self.heartbeat_s:
                raise ValueError(f"{name} ({value:g} s) must be at least two heartbeats "
                                 f"(2 x ABRAR_CLUSTER_HEARTBEAT_S = {2 * self.heartbeat_s:g} s), "
                                 "or live nodes would be taken for dead")
