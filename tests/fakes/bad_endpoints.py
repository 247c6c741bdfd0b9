"""TEST HARNESS: HTTP endpoints that misbehave at the socket level, for the judge fault tests.

`BadEndpoints` runs one asyncio loop on a thread with three listeners:
  * ``hang``: accepts a connection, reads the request, never answers;
  * ``reset``: accepts a connection and resets it (RST, SO_LINGER 0) as soon as the request starts;
  * ``drip``: answers a valid 200 with a JSON body, one byte per `drip_interval_s`, so the answer takes far longer
    than any client timeout while bytes keep arriving (a per-read timeout never fires).
`connections[name]` counts the connections each accepted (one per attempt: the clients do not reuse a socket
that timed out or was reset).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections import Counter
from typing import Any

_DRIP_BODY = b'{"id": "x", "object": "chat.completion", "choices": []}' * 20
_DRIP_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(
    _DRIP_BODY
)


class BadEndpoints:
    def __init__(self, drip_interval_s: float = 0.5) -> None:
        self.drip_interval_s = drip_interval_s
        self.connections: Counter[str] = Counter()
        self.ports: dict[str, int] = {}
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.Server] = []
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> BadEndpoints:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}/v1"

    async def _start(self) -> None:
        for name, handler in (("hang", self._hang), ("reset", self._reset), ("drip", self._drip)):
            server = await asyncio.start_server(self._counted(name, handler), "127.0.0.1", 0)
            self._servers.append(server)
            self.ports[name] = server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        for task in asyncio.all_tasks(self._loop) - {asyncio.current_task()}:
            task.cancel()

    def _counted(self, name: str, handler: Any) -> Any:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections[name] += 1
            try:
                await handler(reader, writer)
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        return handle

    @staticmethod
    async def _hang(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass

    @staticmethod
    async def _reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        sock: socket.socket = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def _drip(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for i in range(len(_DRIP_HEAD + _DRIP_BODY)):
            writer.write((_DRIP_HEAD + _DRIP_BODY)[i : i + 1])
            await writer.drain()
            await asyncio.sleep(self.drip_interval_s)
