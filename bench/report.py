"""Turn a results JSON into docs/benchmarks.md (between its markers) and PNG plots."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no screen: render straight to PNG
import matplotlib.pyplot as plt  # must follow the backend choice

from bench.procs import ROOT

DOC = ROOT / "docs" / "benchmarks.md"
PLOTS = ROOT / "docs" / "benchmarks"
START = "<!-- results:start (written by `make bench`; edit outside these markers) -->"
END = "<!-- results:end -->"

# Targets (issues 5 and 16); each is checked against the run's figures.
TTFT_TARGETS_MS = {"zyron-guest": 1.5, "zyron-postgres": 4.0}
CONCURRENCY_TARGETS = {"zyron-guest": 500, "zyron-postgres": 300}
CPU_PER_EVENT_TARGET_US = 30.0
CPU_PER_EVENT_LEVELS = ("100", "300")
BURST_TARGETS = {"cpu_ms_per_chat": 5.0, "ttft_p50_ms": 1000.0}
MEMORY_TARGET_KIB = 50.0
HISTORY_TARGET_MS = 5.0


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "/")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _goals(results: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    ttft = results.get("ttft", {}).get("targets", {})
    for name, target in TTFT_TARGETS_MS.items():
        if name in ttft:
            added = ttft[name]["added_ttft_p50_ms"]
            rows.append(
                [
                    f"added TTFT p50, concurrency 1 ({name})",
                    f"≤ {target} ms",
                    f"{added} ms",
                    added is not None and added <= target,
                ]
            )
    sweep = results.get("sweep", {})
    for name, target in CONCURRENCY_TARGETS.items():
        if name in sweep.get("highest_clean_level", {}):
            best = sweep["highest_clean_level"][name]
            rows.append(
                [
                    f"streams on one process, no errors/stalls, gap p99 ≤ pacing + 10 ms ({name})",
                    f"≥ {target:,}",
                    best,
                    best is not None and best >= target,
                ]
            )
    for name in CONCURRENCY_TARGETS:
        by_level = sweep.get("targets", {}).get(name, {})
        for level in CPU_PER_EVENT_LEVELS:
            if level in by_level:
                per = by_level[level].get("cpu_us_per_event")
                rows.append(
                    [
                        f"server CPU per relayed text event at {level} streams ({name})",
                        f"≤ {CPU_PER_EVENT_TARGET_US:.0f} µs",
                        f"{per} µs",
                        per is not None and per <= CPU_PER_EVENT_TARGET_US,
                    ]
                )
    for name, burst in results.get("burst", {}).get("targets", {}).items():
        for key, label, unit in (
            ("cpu_ms_per_chat", "server CPU per chat", "ms"),
            ("ttft_p50_ms", "first token p50", "ms"),
        ):
            value = burst.get(key)
            rows.append(
                [
                    f"burst of {results['burst']['chats']} new chats at once: {label} ({name})",
                    f"≤ {BURST_TARGETS[key]:,.0f} {unit}",
                    f"{value} {unit}",
                    value is not None and value <= BURST_TARGETS[key],
                ]
            )
    memory = results.get("memory", {}).get("targets", {})
    for name in ("zyron-guest", "zyron-postgres"):
        if name in memory:
            # The first time N streams open is the upper bound: it includes what the
            # process grows once and keeps.
            per = memory[name].get("cold_per_stream_kib", memory[name]["per_stream_kib"])
            met = per is not None and per <= MEMORY_TARGET_KIB
            rows.append(
                [
                    f"memory per open stream, upper bound ({name})",
                    f"≤ {MEMORY_TARGET_KIB:.0f} KiB",
                    f"{per} KiB",
                    met,
                ]
            )
    soak = results.get("soak", {}).get("targets", {})
    if "zyron-postgres" in soak:
        growth = soak["zyron-postgres"]["growth_mib_per_minute"]
        minutes = results["soak"]["seconds"] / 60
        rows.append(
            [
                f"RSS growth over a {minutes:.0f}-minute soak",
                "none",
                f"{growth} MiB/min",
                growth is not None and abs(growth) < 0.5,
            ]
        )
    reads = results.get("history", {}).get("reads", {})
    for label, path in (
        ("sessions", "GET /sessions"),
        ("messages", "GET /sessions/{id}/messages?limit=100"),
    ):
        if label in reads:
            p50 = reads[label]["p50_ms"]
            rows.append(
                [
                    f"{path} p50 at {results['history']['messages']:,} messages",
                    f"≤ {HISTORY_TARGET_MS} ms",
                    f"{p50} ms",
                    p50 is not None and p50 <= HISTORY_TARGET_MS,
                ]
            )
    return [[*row[:3], "met" if row[3] else "**missed**"] for row in rows]


def _plot_sweep(sweep: dict[str, Any], key: str, ylabel: str, filename: str) -> str:
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name, by_level in sweep["targets"].items():
        levels = sorted(int(level) for level in by_level)
        values = [by_level[str(level)].get(key) for level in levels]
        points = [(lv, v) for lv, v in zip(levels, values, strict=True) if v is not None]
        if points:
            axes.plot(*zip(*points, strict=True), marker="o", label=name)
    if key == "gap_p99_ms":
        axes.axhline(sweep["interval_ms"] + 10, color="grey", linestyle="--", linewidth=1)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("concurrent streams")
    axes.set_ylabel(ylabel)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    PLOTS.mkdir(parents=True, exist_ok=True)
    figure.savefig(PLOTS / filename)
    plt.close(figure)
    return f"![{ylabel}](benchmarks/{filename})"


def _plot_soak(soak: dict[str, Any]) -> str:
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name, row in soak["targets"].items():
        series = row["series"]
        axes.plot([t / 60 for t, _ in series], [v for _, v in series], label=name)
    axes.set_xlabel("minutes")
    axes.set_ylabel("RSS (MiB)")
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    PLOTS.mkdir(parents=True, exist_ok=True)
    figure.savefig(PLOTS / "soak_rss.png")
    plt.close(figure)
    return "![RSS over the soak](benchmarks/soak_rss.png)"


def render(results: dict[str, Any], *, plots: bool) -> str:
    """Return the generated part of docs/benchmarks.md."""
    m = results["machine"]
    out = [
        f"Run of {results['started_at']} ({'quick' if results['quick'] else 'full'} mode, "
        f"{results['seconds'] / 60:.0f} min) on {m['cores']} cores ({m['cpu']}), "
        f"{m['memory_gib']} GiB, {m['os']}, Python {m['python']}. Postgres: a throwaway "
        "cluster with durable settings (fsync and synchronous_commit on).",
        "",
        "### Goals",
        _table(["goal", "target", "result", ""], _goals(results)),
    ]
    if "ttft" in results:
        ttft = results["ttft"]
        out += [
            "",
            "### a, e. Time to first token at concurrency 1",
            f"{ttft['rounds']} interleaved rounds of {ttft['requests_per_round']} sequential "
            f"requests per target ({ttft['chunks']}-chunk replies, first token at once). "
            "*Added* is the median over rounds of (target's round median - direct's round median).",
            "",
            _table(
                ["target", "TTFT p50 ms", "TTFT p99 ms", "added p50 ms", "x direct", "errors"],
                [
                    [
                        name,
                        r["ttft_p50_ms"],
                        r["ttft_p99_ms"],
                        r["added_ttft_p50_ms"],
                        r["ratio_to_direct"],
                        r["errors"],
                    ]
                    for name, r in ttft["targets"].items()
                ],
            ),
        ]
    if "sweep" in results:
        sweep = results["sweep"]
        out += [
            "",
            "### b, e. Concurrent streams",
            f"Each level: that many clients start within ≤ 1.3 s, each streaming "
            f"{sweep['streams_per_user']} replies of {sweep['chunks']} chunks "
            f"{sweep['interval_ms']:.0f} ms apart, back to back; {sweep['rounds']} rounds, "
            "targets alternating. A stall is a gap over twice the pacing. CPU is in cores "
            "(1.0 = one core busy).",
            "",
            _table(
                ["target", "highest clean level"],
                [[name, level] for name, level in sweep["highest_clean_level"].items()],
            ),
        ]
        for name, by_level in sweep["targets"].items():
            rows = [
                [
                    int(level),
                    r["ttft_p50_ms"],
                    r.get("added_ttft_p50_ms"),
                    r["ttft_p99_ms"],
                    r["gap_p50_ms"],
                    r["gap_p99_ms"],
                    r["errors"],
                    r["stalls"],
                    r["cpu_server"],
                    r.get("cpu_us_per_event"),
                    r["rss_max_mib"],
                    r["bottleneck"] or "",
                ]
                for level, r in sorted(by_level.items(), key=lambda item: int(item[0]))
            ]
            out += [
                "",
                f"**{name}**",
                "",
                _table(
                    [
                        "streams",
                        "TTFT p50",
                        "added",
                        "TTFT p99",
                        "gap p50",
                        "gap p99",
                        "errors",
                        "stalls",
                        "CPU",
                        "µs CPU/event",
                        "RSS MiB",
                        "harness limit",
                    ],
                    rows,
                ),
            ]
        if plots:
            out += [
                "",
                _plot_sweep(sweep, "ttft_p50_ms", "TTFT p50 (ms)", "ttft_vs_concurrency.png"),
                _plot_sweep(sweep, "gap_p99_ms", "chunk gap p99 (ms)", "gap_vs_concurrency.png"),
            ]
    if "burst" in results:
        burst = results["burst"]
        out += [
            "",
            "### f. A burst of new chats",
            f"{burst['chats']} signed-in users, each on a connection opened beforehand, start a "
            f"new chat (no session yet) in the same instant; {burst['chunks']}-chunk replies; "
            f"{burst['rounds']} rounds, medians. CPU per chat is the server's CPU from the "
            "burst to its last reply's end, over the chats.",
            "",
            _table(
                ["target", "TTFT p50 ms", "TTFT p99 ms", "CPU ms per chat", "errors"],
                [
                    [name, r["ttft_p50_ms"], r["ttft_p99_ms"], r["cpu_ms_per_chat"], r["errors"]]
                    for name, r in burst["targets"].items()
                ],
            ),
        ]
    if "memory" in results:
        memory = results["memory"]
        out += [
            "",
            "### c. Memory per open stream",
            f"{memory['streams']:,} streams held open (one chunk sent, the next "
            f"{memory.get('hold_seconds', 15):.0f} s later), twice in a row. Per stream is "
            "(RSS while open - RSS before) / streams open. The first time is an upper bound: it "
            "includes what the process grows once (allocator arenas, pools) and keeps; the "
            "second time shows that memory reused rather than grown again.",
            "",
            _table(
                [
                    "target",
                    "open",
                    "KiB/stream first",
                    "KiB/stream second",
                    "RSS open MiB",
                    "errors",
                ],
                [
                    [
                        name,
                        r["open_when_measured"],
                        r.get("cold_per_stream_kib"),
                        r["per_stream_kib"],
                        r["rss_open_mib"],
                        r["errors"],
                    ]
                    for name, r in memory["targets"].items()
                ],
            ),
        ]
    if "soak" in results:
        soak = results["soak"]
        out += [
            "",
            f"### c. Soak: {soak['seconds'] / 60:.0f} minutes at {soak['users']} concurrent "
            "streams",
            "Growth is the least-squares slope of RSS after the first fifth of the run.",
            "",
            _table(
                [
                    "target",
                    "streams",
                    "errors",
                    "RSS start MiB",
                    "RSS end MiB",
                    "growth MiB/min",
                    "CPU",
                ],
                [
                    [
                        name,
                        r["streams"],
                        r["errors"],
                        r["rss_start_mib"],
                        r["rss_end_mib"],
                        r["growth_mib_per_minute"],
                        r["cpu"],
                    ]
                    for name, r in soak["targets"].items()
                ],
            ),
        ]
        if plots:
            out += ["", _plot_soak(soak)]
    if "history" in results:
        history = results["history"]
        out += [
            "",
            f"### d. History reads: {history['messages']:,} messages, {history['users']:,} "
            f"users, {history['sessions']:,} sessions",
            f"Seeded in {history['seed_seconds']} s with COPY; database "
            f"{history['database_mib']:,} MiB. "
            "Latency one request at a time on a keep-alive connection, random users; "
            "throughput with 16 connections back to back. *Direct SQL* is the same "
            "transaction (role, claims, query) over one asyncpg connection.",
            "",
            _table(
                [
                    "read",
                    "p50 ms",
                    "p99 ms",
                    "direct SQL p50 ms",
                    "direct SQL p99 ms",
                    "req/s",
                    "p50 ms loaded",
                    "errors",
                ],
                [
                    [
                        label,
                        r["p50_ms"],
                        r["p99_ms"],
                        r["direct_sql_p50_ms"],
                        r["direct_sql_p99_ms"],
                        r["rps"],
                        r["loaded_p50_ms"],
                        r["rps_errors"],
                    ]
                    for label, r in history["reads"].items()
                ],
            ),
            "",
            "Query plans (EXPLAIN ANALYZE, run as the user under RLS):",
        ]
        for name, plan in history["plans"].items():
            out += ["", f"`{name}`", "```", plan.strip(), "```"]
    return "\n".join(out) + "\n"


def write(path: Path) -> None:
    """Rewrite the generated section of docs/benchmarks.md from a results file (full runs)."""
    results = json.loads(path.read_text())
    if results["quick"]:
        print(render(results, plots=False))
        return
    body = render(results, plots=True)
    text = DOC.read_text() if DOC.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    DOC.write_text(f"{head}{START}\n{body}{END}{tail}")
    print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "bench" / "results" / "full.json")
