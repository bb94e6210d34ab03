"""The real AI SDK client (npm `ai`), run by Node from tests/node: what useChat would do."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

NODE_DIR = Path(__file__).parent / "node"
# The `ai` lines the tests drive: the newest 7.x, the last strict 6.x (before 6.0.231 it refuses
# unknown chunk fields) and a strict 5.x (before 5.0.92 it refuses finish.finishReason too).
# Exact versions: tests/node/package.json.
PACKAGES = ("ai", "ai6", "ai5")


def node_or_skip() -> str:
    """The node binary, with tests/node's packages installed; else skip, saying why."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node is not installed (Debian: apt install nodejs); the AI SDK tests need it")
    if not (NODE_DIR / "node_modules" / "ai" / "package.json").is_file():
        pytest.skip("tests/node has no node_modules: make test installs them (npm ci)")
    return node


def drive(node: str, request: dict[str, Any], script: str = "ui_chat.mjs") -> dict[str, Any]:
    """Run a tests/node script with one request; return what the client saw."""
    done = subprocess.run(
        [node, str(NODE_DIR / script)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=NODE_DIR,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise AssertionError(f"node failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


class Running:
    """A tests/node script running in the background, until `result()`."""

    def __init__(self, node: str, request: dict[str, Any], script: str = "ui_chat.mjs") -> None:
        self.process = subprocess.Popen(
            [node, str(NODE_DIR / script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=NODE_DIR,
        )
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request))
        self.process.stdin.close()
        self.process.stdin = None  # written and closed: communicate() must not flush it

    def wait_for_first_chunk(self) -> None:
        """Block until the client has parsed its first chunk (ui_chat.mjs says so on stderr)."""
        self.wait_for("first-chunk")

    def wait_for(self, line: str) -> None:
        """Block until the script writes `line` on stderr."""
        assert self.process.stderr is not None
        said = self.process.stderr.readline()
        if said.strip() != line:
            raise AssertionError(f"no {line!r} came: {said}{self.process.stderr.read()[-2000:]}")

    def steps(self) -> list[dict[str, Any]]:
        """Wait for use_chat.mjs to finish; return its steps."""
        steps: list[dict[str, Any]] = self.result()["steps"]
        return steps

    def result(self) -> dict[str, Any]:
        """Wait for the client to finish; return what it saw."""
        stdout, stderr = self.process.communicate(timeout=60)
        if self.process.returncode != 0 or not stdout.strip():
            raise AssertionError(f"node failed ({self.process.returncode}): {stderr[-2000:]}")
        result: dict[str, Any] = json.loads(stdout.splitlines()[-1])
        return result
