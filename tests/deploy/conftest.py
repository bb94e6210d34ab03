"""The deployment of docs/deploy.md, for real: HAProxy, three replicas, Postgres and Redis."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.deploy.haproxy import Haproxy, HaproxyUnavailable, find_haproxy
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.pg import PostgresServer
from tests.redis_server import RedisServer
from tests.replicas import Deployment, Replica, deployed
from zyron.settings import Settings

# The rates the tests reach; everything else generous, so that 50 streams never meet a limit.
GUEST_CHATS_PER_HOUR = 4
TOPOLOGY_SETTINGS = {
    "RATE_LIMIT_ENABLED": "true",
    "TRUSTED_PROXIES": "127.0.0.1",  # HAProxy's address as the replicas see it
    "GUEST_CHAT_RATE": f"{GUEST_CHATS_PER_HOUR}/hour",
    "USER_CHAT_RATE": "100000/hour",
    "USER_MAX_CONCURRENT": "100",
    "SIGNUP_IP_RATE": "1000/hour",
    # The production drain minimum, made for the health checks of deploy/haproxy.cfg.
    "DRAIN_MIN_SECONDS": str(Settings.model_fields["drain_min_seconds"].default),
    "DRAIN_TIMEOUT_SECONDS": "30",
    # Production's leases and sweeps, not tests/replicas.py's short ones made for crash tests.
    **{
        name.upper(): str(Settings.model_fields[name].default)
        for name in ("reply_lease_seconds", "reply_heartbeat_seconds", "recovery_interval_seconds")
    },
}


@dataclass
class Topology:
    """HAProxy in front of replicas zyron1..3 on one database and one Redis."""

    deployment: Deployment
    proxy: Haproxy
    redis_url: str

    @property
    def replicas(self) -> list[Replica]:
        """Return the replicas, in the order of the HAProxy backend (zyron1, zyron2, zyron3)."""
        return self.deployment.replicas


@pytest.fixture(scope="session")
def haproxy_binary() -> str:
    """The system's haproxy; else skip, saying why."""
    try:
        return find_haproxy()
    except HaproxyUnavailable as exc:
        pytest.skip(f"no HAProxy for the deployment tests: {exc}")


@pytest.fixture(scope="module")
def topology(
    haproxy_binary: str,
    postgres: PostgresServer,
    redis_server: RedisServer,
    fake_anthropic: FakeAnthropic,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Topology]:
    """Three replicas behind deploy/haproxy.cfg; all stopped at the end."""
    workdir = tmp_path_factory.mktemp("deploy")
    with deployed(postgres, fake_anthropic.base_url, workdir) as deployment:
        for index in (1, 2, 3):
            deployment.start(
                f"zyron{index}", redis_url=redis_server.url, settings=TOPOLOGY_SETTINGS
            )
        proxy = Haproxy(haproxy_binary, deployment.replicas, workdir)
        checked = proxy.check()
        assert checked.returncode == 0, checked.stdout + checked.stderr
        proxy.start()
        try:
            yield Topology(deployment, proxy, redis_server.url)
        finally:
            proxy.stop()
