"""Time what attaching a 1 MB image adds to the first token of POST /chat, on disk and in S3.

`python -m bench.attachments [--quick]` starts the load upstream (bench/upstream.py), a
throwaway SeaweedFS (as tests/s3_server.py does) and two `zyron serve` processes on SQLite:
one with STORAGE_BACKEND=local, one with STORAGE_BACKEND=s3 against SeaweedFS. It uploads a
PNG of random pixels (about 1 MB, incompressible) and a 16 x 16 one to each with POST
/files, then times streaming POST /chat from the request to the first `delta` event,
sequentially, each request in a new session, taking turns: no attachment, the small image,
the 1 MB image (`attachments: [file_id]`), and the targets: the two servers and the SDK
alone (the same prompt and image sent by the official SDK from this process, no Zyron). It
prints medians and p90s and writes them as JSON (bench/results/attachments.json; with
--quick, bench/results/attachments-quick.json). Everything it starts is stopped, and its
temporary directories deleted, when it ends, within --timeout seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import json
import os
import random
import shutil
import statistics
import struct
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import anthropic
import httpx
from anthropic._utils._json import openapi_dumps
from anthropic.types import MessageParam

from bench.client import ZYRON, Connection, Dialect, stream_result
from bench.context import machine
from bench.procs import ROOT, Server, start_upstream, start_zyron
from bench.stats import median, ms, percentile
from tests.s3_server import S3Server
from zyron.files import storage

FULL_REQUESTS, QUICK_REQUESTS = 40, 10  # timed, per target and kind of attachment
WARMUP_REQUESTS = 4  # per target and kind, not counted
CHUNKS, INTERVAL_MS = 8, 1.0  # the reply, as in scenario a: 8 chunks, first one at once
IMAGE_SIDE = 580  # 580 x 580 RGB noise: 1,009,780 bytes of pixels, as many once compressed
IMAGE_BYTES, IMAGE_TOLERANCE = 1_000_000, 0.05
PROMPT = "What is in this picture?"  # under 200 characters: no token-ratio calibration
PASSWORD = "bench-password-1"  # noqa: S105  # a throwaway account on a throwaway server
BREAKDOWN_REPEATS = 30
RESULTS = ROOT / "bench" / "results"
# No file; a 16 x 16 noise PNG (what any attachment costs: the file's row, one storage read);
# the 1 MB one (what its size adds: base64, a larger request).
KINDS = ("none", "small", "image")
SMALL_SIDE = 16
# Zyron with each storage; then the SDK alone with the image already in memory, which is the
# part of the added time that is base64, the SDK, the larger request and the upstream's parse.
BACKENDS = ("local", "s3", "sdk")


def noise_png(width: int, height: int, seed: int = 1) -> bytes:
    """Return an 8-bit RGB PNG of random pixels: zlib cannot shrink it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    rng = random.Random(seed)
    rows = b"".join(b"\x00" + rng.randbytes(width * 3) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@dataclass
class Sample:
    """One timed request: which server, with or without the image, and what came back."""

    backend: str
    kind: str
    ttft: float
    input_tokens: int | None


@dataclass
class Target:
    """A Zyron server with a signed-in user and the id of the image uploaded to it."""

    backend: str
    server: Server
    token: str
    user_id: str
    file_ids: dict[str, str]
    connection: Connection = field(init=False)

    def __post_init__(self) -> None:
        self.connection = Connection("127.0.0.1", self.server.port)


def done_catcher(into: list[bytes]) -> Dialect:
    """Zyron's dialect, also keeping each `done` event (it carries the upstream's usage)."""

    def is_error(event: bytes) -> bool:
        if b"\nevent: done\n" in event:
            into.append(event)
        return ZYRON.is_error(event)

    return Dialect("zyron-done", is_text=ZYRON.is_text, is_error=is_error)


def _input_tokens(events: list[bytes]) -> int | None:
    """Return the prompt's tokens from the last `done` event, if there is one: its uncached
    input and its cache writes and reads together (caching is on by default)."""
    for event in reversed(events):
        for line in event.split(b"\n"):
            if line.startswith(b"data: "):
                usage = json.loads(line[6:]).get("usage") or {}
                if usage.get("input_tokens") is None:
                    return None
                kinds = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
                return sum(int(usage.get(kind) or 0) for kind in kinds)
    return None


async def sign_up_and_upload(backend: str, server: Server, images: dict[str, bytes]) -> Target:
    """Create an account on the server and upload each image once with POST /files."""
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        signup = await client.post(
            "/auth/signup", json={"email": f"{backend}@bench.example", "password": PASSWORD}
        )
        if signup.status_code != 201:
            raise RuntimeError(f"signup on {backend}: {signup.status_code} {signup.text[:200]}")
        token = str(signup.json()["access_token"])
        file_ids: dict[str, str] = {}
        for kind, image in images.items():
            upload = await client.post(
                "/files",
                headers={"Authorization": f"Bearer {token}"},
                files={"file": (f"{kind}.png", image, "image/png")},
            )
            if upload.status_code != 201:
                raise RuntimeError(f"upload to {backend}: {upload.status_code} {upload.text[:300]}")
            file_ids[kind] = str(upload.json()["id"])
        user_id = str(signup.json()["user"]["id"])
        return Target(backend, server, token, user_id, file_ids)


async def chat(target: Target, kind: str) -> Sample:
    """Send one streaming POST /chat in a new session; return its time to the first delta."""
    body: dict[str, Any] = {"message": PROMPT}
    if kind != "none":
        body["attachments"] = [target.file_ids[kind]]
    done: list[bytes] = []
    response = await target.connection.request(
        "POST",
        "/chat",
        body=body,
        headers={"Authorization": f"Bearer {target.token}"},
        stream=done_catcher(done),
        limit_seconds=60,
    )
    result = stream_result(response, expected_chunks=CHUNKS)
    if not result.ok or result.ttft is None:
        raise RuntimeError(f"{target.backend} {kind}: {result.error}")
    return Sample(target.backend, kind, result.ttft, _input_tokens(done))


class SdkDirect:
    """The Anthropic SDK alone, as Zyron uses it (aiohttp), sending the image to the upstream."""

    backend = "sdk"

    def __init__(self, upstream: Server, images: dict[str, bytes]) -> None:
        self.images = images
        self.client = anthropic.AsyncAnthropic(
            api_key="sk-ant-bench",
            base_url=upstream.url,
            max_retries=0,
            http_client=anthropic.DefaultAioHttpClient(),
        )

    async def chat(self, kind: str) -> Sample:
        """Stream one reply; return its time to the first text event (base64 included)."""
        started = time.perf_counter()
        content: str | list[dict[str, Any]] = PROMPT
        if kind != "none":
            data = base64.b64encode(self.images[kind]).decode("ascii")
            source = {"type": "base64", "media_type": "image/png", "data": data}
            content = [{"type": "image", "source": source}, {"type": "text", "text": PROMPT}]
        stream = await self.client.messages.create(
            model="claude-sonnet-5",
            max_tokens=4096,
            messages=[cast(MessageParam, {"role": "user", "content": content})],
            stream=True,
        )
        ttft: float | None = None
        tokens: int | None = None
        async with stream:
            async for event in stream:
                if event.type == "message_start":
                    tokens = event.message.usage.input_tokens
                elif event.type == "content_block_delta" and ttft is None:
                    ttft = time.perf_counter() - started
        if ttft is None:
            raise RuntimeError(f"sdk {kind}: no text event")
        return Sample(self.backend, kind, ttft, tokens)

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self.client.close()


Chat = Callable[[str], Awaitable[Sample]]


async def measure(chats: Sequence[Chat], requests: int) -> list[Sample]:
    """Warm up, then time `requests` of each kind per target, taking turns round by round."""
    for _ in range(WARMUP_REQUESTS):
        for send in chats:
            for kind in KINDS:
                await send(kind)
    samples: list[Sample] = []
    for round_ in range(requests):
        # Who goes first changes every round, so drift on a shared machine hits all alike.
        turn = round_ % len(chats)
        order = [*chats[turn:], *chats[:turn]]
        turn = (round_ // len(chats)) % len(KINDS)
        kinds = KINDS[turn:] + KINDS[:turn]
        for send in order:
            for kind in kinds:
                samples.append(await send(kind))
    return samples


def _timed(call: Callable[[], object], repeats: int = BREAKDOWN_REPEATS) -> float:
    """Return the median seconds of `call`, after one untimed call."""
    call()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def breakdown(
    image: bytes, local_path: Path, s3: S3Server, bucket: str, key: str
) -> dict[str, Any]:
    """Time, in this process, the steps an attached image adds (not inside Zyron itself)."""
    encoded = base64.b64encode(image).decode("ascii")
    body: dict[str, Any] = {
        "model": "claude-sonnet-5",
        "max_tokens": 4096,
        "stream": True,
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/png",
                            "data": encoded,
                        },
                    },
                    {"type": "text", "text": PROMPT},
                ],
            }
        ],
    }
    request = openapi_dumps(body)  # the SDK's own encoder, as it sends the body

    def s3_get() -> bytes:
        data: bytes = s3.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return data

    return {
        "read_local_file_ms": ms(_timed(local_path.read_bytes)),
        "get_s3_object_ms": ms(_timed(s3_get)),
        "base64_encode_ms": ms(_timed(lambda: base64.b64encode(image))),
        "sdk_encode_request_ms": ms(_timed(lambda: openapi_dumps(body))),
        "upstream_decode_request_ms": ms(_timed(lambda: json.loads(request))),
        "request_bytes": len(request),
        "note": "one thread of the benchmark process; botocore (sync) stands in for aiobotocore",
    }


def summarise(samples: Sequence[Sample]) -> dict[str, Any]:
    """Medians and p90s per server and kind, and what the image adds per server."""
    out: dict[str, Any] = {}
    for backend in BACKENDS:
        rows: dict[str, Any] = {}
        for kind in KINDS:
            chosen = [s for s in samples if s.backend == backend and s.kind == kind]
            times = [s.ttft for s in chosen]
            tokens = [s.input_tokens for s in chosen if s.input_tokens is not None]
            rows[kind] = {
                "n": len(times),
                "median_ms": ms(median(times)),
                "p90_ms": ms(percentile(times, 90)),
                "min_ms": ms(min(times)),
                "max_ms": ms(max(times)),
                # The load upstream reports input_tokens = its request body's bytes // 4.
                "upstream_request_bytes": 4 * int(statistics.median(tokens)) if tokens else None,
                "ttft_ms": [ms(t) for t in times],
            }
        without = [s.ttft for s in samples if s.backend == backend and s.kind == "none"]
        for kind in KINDS[1:]:
            attached = [s.ttft for s in samples if s.backend == backend and s.kind == kind]
            paired = [b - a for a, b in zip(without, attached, strict=True)]
            rows[kind]["added_median_ms"] = _diff(
                rows[kind]["median_ms"], rows["none"]["median_ms"]
            )
            rows[kind]["added_p90_ms"] = _diff(rows[kind]["p90_ms"], rows["none"]["p90_ms"])
            # Round by round: each round's request with the file minus the one without.
            rows[kind]["added_paired_median_ms"] = ms(median(paired))
        out[backend] = rows
    return out


def object_key(target: Target, kind: str) -> str:
    """Return where the server stored a file: the key zyron.files.storage.object_key makes."""
    return storage.object_key(uuid.UUID(target.user_id), uuid.UUID(target.file_ids[kind]))


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 3)


def print_table(summary: dict[str, Any]) -> None:
    """Print the medians, p90s and the added time per backend."""
    heads = ("backend", "attachment", "n", "p50 ms", "p90 ms", "added p50", "upstream bytes")
    print("\n{:8} {:10} {:>3} {:>8} {:>8} {:>9} {:>15}".format(*heads))
    for backend in BACKENDS:
        for kind in KINDS:
            row = summary[backend][kind]
            size = row["upstream_request_bytes"]
            added = row.get("added_median_ms")
            print(
                f"{backend:8} {kind:10} {row['n']:>3} {row['median_ms']:>8.2f} "
                f"{row['p90_ms']:>8.2f} {'-' if added is None else f'{added:.2f}':>9} "
                f"{'-' if size is None else size:>15}"
            )
    for backend in BACKENDS:
        row = summary[backend]["image"]
        print(
            f"{backend}: the 1 MB image adds {row['added_median_ms']:.2f} ms at the median "
            f"({row['added_paired_median_ms']:.2f} ms round by round), "
            f"{row['added_p90_ms']:.2f} ms at p90"
        )


async def run(args: argparse.Namespace, stack: ExitStack, work: Path) -> dict[str, Any]:
    """Start everything, upload, measure; return the results."""
    requests = QUICK_REQUESTS if args.quick else FULL_REQUESTS
    image = noise_png(IMAGE_SIDE, IMAGE_SIDE)
    small = noise_png(SMALL_SIDE, SMALL_SIDE)
    if abs(len(image) - IMAGE_BYTES) > IMAGE_TOLERANCE * IMAGE_BYTES:
        raise RuntimeError(f"the image is {len(image):,} bytes, not 1.0 +/- 0.05 MB")
    logs = work / "logs"
    upstream = start_upstream(logs)
    stack.callback(upstream.stop)
    async with httpx.AsyncClient(base_url=upstream.url) as client:
        pacing = {"first_token_ms": 0, "chunks": CHUNKS, "interval_ms": INTERVAL_MS}
        (await client.put("/_bench/pacing", json=pacing)).raise_for_status()
    s3 = S3Server.start()
    stack.callback(s3.stop)
    bucket = s3.create_bucket()
    common = {
        "AUTO_TITLES": "false",
        "RATE_LIMIT_ENABLED": "false",
        "MAX_IMAGE_BYTES": str(8_000_000),
        # The load upstream counts a request's bytes / 4 as its input tokens: 340,000 per
        # image request, which would use up the default daily quota within the run.
        "USER_DAILY_TOKENS": "0",
    }
    s3_env = {
        "STORAGE_BACKEND": "s3",
        "S3_BUCKET": bucket,
        "S3_ENDPOINT_URL": s3.endpoint,
        "S3_REGION": "us-east-1",
        "S3_ACCESS_KEY_ID": s3.access_key,
        "S3_SECRET_ACCESS_KEY": s3.secret_key,
        "S3_FORCE_PATH_STYLE": "true",
    }
    targets: list[Target] = []
    for backend, extra in (("local", {"STORAGE_BACKEND": "local"}), ("s3", s3_env)):
        data_dir = work / backend
        server = start_zyron(
            f"zyron-{backend}",
            database_url=f"sqlite+aiosqlite:///{data_dir / 'zyron.db'}",
            upstream=upstream,
            data_dir=data_dir,
            logs=logs,
            extra_env={**common, **extra},
        )
        stack.callback(server.stop)
        targets.append(await sign_up_and_upload(backend, server, {"small": small, "image": image}))
    print(
        f"image: {IMAGE_SIDE}x{IMAGE_SIDE} RGB noise PNG, {len(image):,} bytes; small: "
        f"{SMALL_SIDE}x{SMALL_SIDE}, {len(small):,} bytes; "
        f"{requests} timed requests per server and kind after {WARMUP_REQUESTS} warm-up",
        flush=True,
    )
    sdk = SdkDirect(upstream, {"small": small, "image": image})
    chats: list[Chat] = [functools.partial(chat, target) for target in targets]
    load_before = os.getloadavg()
    began = time.monotonic()
    try:
        samples = await measure([*chats, sdk.chat], requests)
    finally:
        await sdk.aclose()
        for target in targets:
            await target.connection.close()
    elapsed = time.monotonic() - began
    summary = summarise(samples)
    local, remote = targets
    parts = breakdown(
        image, work / "local" / object_key(local, "image"), s3, bucket, object_key(remote, "image")
    )
    return {
        "quick": args.quick,
        "started_at": args.started_at,
        "machine": machine(),
        "image": {"width": IMAGE_SIDE, "height": IMAGE_SIDE, "bytes": len(image)},
        "small_image": {"width": SMALL_SIDE, "height": SMALL_SIDE, "bytes": len(small)},
        "requests_per_kind": requests,
        "warmup_per_kind": WARMUP_REQUESTS,
        "reply": {"chunks": CHUNKS, "interval_ms": INTERVAL_MS, "first_token_ms": 0},
        "measure_seconds": round(elapsed, 1),
        # 1-minute load average before and after: the machine is shared with other work.
        "load_average": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "results": summary,
        "breakdown": parts,
    }


async def _bounded(args: argparse.Namespace, stack: ExitStack, work: Path) -> dict[str, Any]:
    async with asyncio.timeout(args.timeout):
        return await run(args, stack, work)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line, run, print and save."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10 requests per kind, not 40")
    parser.add_argument("--out", type=Path, help="where to write the JSON")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after (s)")
    args = parser.parse_args(argv)
    args.started_at = datetime.now(UTC).isoformat(timespec="seconds")
    out: Path = args.out or RESULTS / (
        "attachments-quick.json" if args.quick else "attachments.json"
    )
    work = Path(tempfile.mkdtemp(prefix="zyron-bench-attachments-"))
    try:
        with ExitStack() as stack:
            results = asyncio.run(_bounded(args, stack, work))
    except BaseException as exc:
        log_dir = work / "logs"
        for log in sorted(log_dir.glob("*.log")) if log_dir.exists() else []:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            print(f"--- {log.name}\n{tail}", file=sys.stderr)
        if isinstance(exc, TimeoutError):
            raise SystemExit(f"gave up after {args.timeout:.0f} s (--timeout)") from None
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(results["results"])
    print("breakdown (this process):", json.dumps(results["breakdown"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
