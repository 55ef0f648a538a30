"""WebSocket load for ``tqd bench --ws-clients N``: N clients on /v1/events.

Run as its own process (``tqd bench --ws-clients-process URL N``, which
``tqd bench --ws-clients N`` starts), as browsers would be: it connects N clients subscribed to every queue, prints ``ready`` once
all are connected, reads every message as fast as it can, and on SIGTERM
prints one JSON line with what they received.
"""

from __future__ import annotations

import asyncio
import json
import signal

import aiohttp


async def _client(session: aiohttp.ClientSession, url: str, counts: dict[str, int],
                  ready: asyncio.Event, connected: list[int], total: int) -> None:
    async with session.ws_connect(url + "/v1/events", autoping=True) as ws:
        connected[0] += 1
        if connected[0] == total:
            ready.set()
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            counts["messages"] += 1
            if '"lagged"' in msg.data:
                counts["lagged"] += 1
                counts["dropped"] += json.loads(msg.data)["dropped"]


async def main(url: str, n: int) -> None:
    counts = {"messages": 0, "lagged": 0, "dropped": 0}
    ready = asyncio.Event()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    connected = [0]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        jobs = [asyncio.create_task(_client(session, url, counts, ready, connected, n))
                for _ in range(n)]
        await ready.wait()
        print("ready", flush=True)
        await stop.wait()
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
    print(json.dumps({"ws_clients": n, "ws_messages": counts["messages"],
                      "ws_lagged": counts["lagged"], "ws_dropped": counts["dropped"]}), flush=True)


def run_clients(url: str, n: int) -> int:
    """Run N clients until SIGTERM (``tqd bench --ws-clients`` starts this)."""
    try:
        import uvloop

        uvloop.run(main(url, n))
    except ImportError:  # pragma: no cover
        asyncio.run(main(url, n))
    return 0
