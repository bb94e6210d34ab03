"""The database kinds the API suite runs against."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.pg import APP_ROLE, PostgresServer, sqlalchemy_url
from tests.support import ADMIN_URLS, LiveServer, live_server, make_settings
from zyron.settings import Settings


@dataclass
class Backend:
    """A database kind the API suite runs against; each server gets a database of its own."""

    name: str
    postgres: PostgresServer | None = None

    def settings(self, data_dir: Path, **overrides: Any) -> Settings:
        """Settings for a test server on a new, empty database of this kind."""
        if self.postgres is not None:
            database = self.postgres.create_database()
            url = sqlalchemy_url(self.postgres.dsn(database, user=APP_ROLE))
            ADMIN_URLS[url] = sqlalchemy_url(self.postgres.dsn(database))
            overrides.setdefault("database_url", url)
        return make_settings(data_dir, **overrides)

    @contextmanager
    def claude_server(
        self, data_dir: Path, upstream: FakeAnthropic, **overrides: Any
    ) -> Iterator[LiveServer]:
        """Run a server on this kind of database whose Claude models are the fake upstream."""
        settings = self.settings(
            data_dir,
            anthropic_api_key="sk-ant-test",
            anthropic_base_url=upstream.base_url,
            **overrides,
        )
        with live_server(settings) as running:
            yield running
