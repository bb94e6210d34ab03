"""The database going away: clear 503s while it is gone, normal service when it is back."""

from __future__ import annotations

from pathlib import Path

from tests.pg import APP_ROLE, PostgresServer, sqlalchemy_url
from tests.support import live_server, make_settings, signup


def test_unreachable_database_is_a_503_then_service_resumes(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """Requests that need the database get 503 database_unavailable, never a 500 or a trace."""
    database = postgres.create_database()
    url = sqlalchemy_url(postgres.dsn(database, user=APP_ROLE))
    with live_server(make_settings(tmp_path, database_url=url)) as server, server.client() as http:
        account = signup(http)
        assert http.get("/sessions", headers=account.headers).status_code == 200

        postgres.execute(
            f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false;'
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND pid <> pg_backend_pid();"
        )
        try:
            for _ in range(3):
                response = http.get("/sessions", headers=account.headers)
                assert response.status_code == 503, response.text
                assert response.json()["error"] == "database_unavailable"
                assert response.headers["retry-after"] == "2"
                assert "Traceback" not in response.text
            login = http.post(
                "/auth/login", json={"email": account.email, "password": "whatever-it-is"}
            )
            assert login.status_code == 503
            health = http.get("/health")
            assert health.status_code == 503
            assert health.json()["database"] == "failed"
        finally:
            postgres.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')

        assert http.get("/sessions", headers=account.headers).status_code == 200
        assert http.get("/health").json()["database"] == "ok"
