"""The CPU that the socket calls of one relayed event cost on this machine, with no relay at all.

`python -m bench.socket_floor` writes small SSE events over loopback TCP under uvloop, one
write at a time with the reader taking each on its own (as a paced stream is read), and prints
the process CPU per write-and-read pair: the floor under any relay that reads an event from
upstream and writes it to a client, whatever it is written in.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time

import uvloop

EVENT = b'event: delta\ndata: {"text":"hello "}\n\n'


async def pairs_cost(count: int) -> float:
    """Write `count` events one by one to a loopback reader; return CPU µs per write+read."""
    loop = asyncio.get_running_loop()
    received = 0
    done = asyncio.Event()

    class Reader(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            nonlocal received
            received += 1
            if received >= count:
                done.set()

    server = await loop.create_server(Reader, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    started = time.process_time()
    for _ in range(count):
        transport.write(EVENT)
        # Two turns of the loop let the reader's callback run before the next write, so
        # every write is read on its own, as the bench's paced events are.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    await asyncio.wait_for(done.wait(), 60)
    cpu = time.process_time() - started
    transport.close()
    server.close()
    if received != count:
        raise SystemExit(f"writes merged: {count} writes arrived as {received} reads")
    return cpu / count * 1e6


def main() -> None:
    """Print the floor three times; quote the median."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    runs = sorted(uvloop.run(pairs_cost(args.events)) for _ in range(3))
    print(f"CPU per event's write and read, loopback, uvloop: median {runs[1]:.1f} µs {runs}")


if __name__ == "__main__":
    main()
