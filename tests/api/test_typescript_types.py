"""Zyron's OpenAPI document as TypeScript: openapi-typescript's types compile, used by a client.

The document is the one a running server serves (with its model ids); openapi-typescript turns
it into `schema.ts` in a temporary directory, and `tsc --strict` compiles tests/node/types/check.ts
(every operation's request and response) and streams.ts (the stream events) against it. Errors
of either tool fail the test, with their output; only a missing Node or missing packages skip.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.node_client import NODE_DIR, node_or_skip
from tests.support import live_server, make_settings

TYPES_DIR = NODE_DIR / "types"
OPENAPI_TYPESCRIPT = NODE_DIR / "node_modules" / "openapi-typescript" / "bin" / "cli.js"
TSC = NODE_DIR / "node_modules" / "typescript" / "bin" / "tsc"


def run(command: list[str], what: str) -> None:
    """Run a Node tool from tests/node; fail with its output if it reports an error."""
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, cwd=NODE_DIR
    )
    if done.returncode != 0:
        pytest.fail(f"{what} failed ({done.returncode}):\n{done.stdout}{done.stderr}", False)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """Node, and a directory holding the document and the types generated from it."""
    node = node_or_skip()
    for tool in (OPENAPI_TYPESCRIPT, TSC):
        if not tool.is_file():
            pytest.skip(f"tests/node has no {tool.relative_to(NODE_DIR)}: make test installs it")
    out = tmp_path_factory.mktemp("openapi-typescript")
    settings = make_settings(out / "data", anthropic_api_key="sk-ant-test")
    with live_server(settings) as server, server.client() as client:
        document = client.get("/openapi.json").json()
    assert "enum" in json.dumps(
        document["components"]["schemas"]["ChatRequest"]["properties"]["model"]
    )
    (out / "openapi.json").write_text(json.dumps(document), encoding="utf-8")
    # Only `required` makes a field required: by default openapi-typescript 7 also requires
    # every field with a default, so POST /chat's `{"message": "Hi"}` would lack `stream`.
    run(
        [
            node,
            str(OPENAPI_TYPESCRIPT),
            str(out / "openapi.json"),
            "--output",
            str(out / "schema.ts"),
            "--default-non-nullable",
            "false",
        ],
        "openapi-typescript",
    )
    return node, out


@pytest.mark.parametrize("source", ["check.ts", "streams.ts"])
def test_the_generated_types_compile_as_a_client_uses_them(
    generated: tuple[str, Path], source: str
) -> None:
    """tsc --strict accepts the client code, and refuses each wrong shape it marks."""
    node, out = generated
    tsconfig = out / f"tsconfig.{Path(source).stem}.json"
    config = {
        "extends": str(TYPES_DIR / "tsconfig.json"),
        "compilerOptions": {"paths": {"zyron-openapi": [str(out / "schema.ts")]}},
        "files": [str(TYPES_DIR / source)],
    }
    tsconfig.write_text(json.dumps(config, indent=2), encoding="utf-8")
    run(
        [node, str(TSC), "--project", str(tsconfig), "--noEmit", "--strict", "--pretty", "false"],
        f"tsc on tests/node/types/{source}",
    )
