"""A loopback TCP proxy that can lose responses: it forwards the request to the server, waits
until the server starts answering (so the server has committed), and then drops the connection
without relaying a byte of the answer. Runs its own event loop in a thread."""

from __future__ import annotations

import asyncio
import threading
from contextlib import suppress

from tests.reliability.harness import free_port


class ResponseDroppingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.drop_next = 0
        self.dropped = 0
        self.relayed = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> ResponseDroppingProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("proxy did not start")
        return self

    def __exit__(self, *_: object) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            current = asyncio.current_task()
            handlers = [task for task in asyncio.all_tasks() if task is not current]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def requests() -> None:
            with suppress(ConnectionError):
                while chunk := await client_reader.read(65536):
                    upstream_writer.write(chunk)
                    await upstream_writer.drain()

        forward = asyncio.create_task(requests())
        try:
            while True:
                chunk = await asyncio.wait_for(upstream_reader.read(65536), timeout=30)
                if not chunk:
                    break
                if self.drop_next > 0:
                    # The server is answering, so it has committed: lose the answer.
                    self.drop_next -= 1
                    self.dropped += 1
                    break
                self.relayed += 1
                client_writer.write(chunk)
                await client_writer.drain()
        except (ConnectionError, TimeoutError):
            pass
        finally:
            forward.cancel()
            for writer in (client_writer, upstream_writer):
                writer.close()
                with suppress(ConnectionError):
                    await writer.wait_closed()
