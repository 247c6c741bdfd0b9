"""The HTTP listeners' connections send small answers at once (TCP_NODELAY): without it a keep-alive client
waits ~40 ms per answer (Nagle's algorithm against its delayed ACK)."""

from __future__ import annotations

import asyncio
import socket

from tracejudge.components import Listeners


async def _accepted_nodelay(listening: socket.socket, port: int) -> list[int]:
    seen: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted = writer.get_extra_info("socket")
        seen.append(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(handle, sock=listening)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.read()
    writer.close()
    server.close()
    return seen


def test_accepted_connections_have_tcp_nodelay() -> None:
    listeners = Listeners("127.0.0.1", {"api": 0})
    listeners.start()
    try:
        assert asyncio.run(_accepted_nodelay(listeners.sockets["api"], listeners.port("api"))) == [1]
    finally:
        listeners.stop()
