"""Run `zyron` with cProfile switched on by signal: `python -m bench.profiled OUT ARGS`.

SIGUSR1 starts the profiler and SIGUSR2 stops it and writes the stats to OUT, so a profile
covers the load and not the start-up. py-spy cannot attach on these machines (it finds no
Python in the target), so profiles are taken from inside. cProfile inflates the cost of small
calls: read the shares, not the absolute times.
"""

from __future__ import annotations

import cProfile
import signal
import sys
from types import FrameType

from zyron.cli import main

if __name__ == "__main__":
    out, argv = sys.argv[1], sys.argv[2:]
    profiler = cProfile.Profile()

    def start(_: int, __: FrameType | None) -> None:
        profiler.enable()

    def stop(_: int, __: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.exit(main(argv))
