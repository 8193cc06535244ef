"""An MLLP listener for EHR interfaces: many connections at once, many messages per connection.

Each message is stored and committed before its ACK goes back (AA stored, AE understood but
not applicable, AR unreadable). Writes from all connections are grouped into one transaction
every few milliseconds, so a burst costs one commit per group, not one per message. Stored
messages are handed to ingest in batches (every N messages or every few seconds), never one
flow run per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from openslots.connectors.database import get_engine
from openslots.connectors.database.hl7_store import Stored, store_messages
from openslots.connectors.hl7.ack import ack
from openslots.connectors.hl7.errors import Hl7Error
from openslots.settings import Settings

START, END = b"\x0b", b"\x1c\r"
MAX_FRAME = 16 * 1024 * 1024
GROUP_MAX = 500
log = logging.getLogger("openslots.mllp")


class StorageUnavailable(Hl7Error):
    code = "207"


@dataclass
class ListenerStats:
    connections: int = 0
    received: int = 0
    acked: dict[str, int] | None = None
    batches: int = 0

    def __post_init__(self) -> None:
        self.acked = {"AA": 0, "AE": 0, "AR": 0}


def frames(buffer: bytearray) -> list[bytes]:
    """Take every complete MLLP frame out of `buffer` (bytes before a start block are junk)."""
    found: list[bytes] = []
    while True:
        start = buffer.find(START)
        if start < 0:
            buffer.clear()
            return found
        end = buffer.find(END, start + 1)
        if end < 0:
            del buffer[:start]
            if len(buffer) > MAX_FRAME:
                buffer.clear()
            return found
        found.append(bytes(buffer[start + 1 : end]))
        del buffer[: end + len(END)]


class MllpListener:
    def __init__(
        self,
        settings: Settings,
        host: str = "127.0.0.1",
        port: int = 2575,
        on_batch: Callable[[], object] | None = None,
    ):
        self.settings = settings
        self.host, self.port = host, port
        self.on_batch = on_batch
        self.stats = ListenerStats()
        self._queue: asyncio.Queue[tuple[bytes, asyncio.Future[Stored]]] | None = None
        self._pending_ingest = 0
        self._server: asyncio.base_events.Server | None = None
        self.ready = asyncio.Event()

    async def serve(self) -> None:
        """Run until cancelled."""
        self._queue = asyncio.Queue()
        self._server = await asyncio.start_server(self._connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        writer = asyncio.create_task(self._writer())
        batcher = asyncio.create_task(self._batcher())
        self.ready.set()
        try:
            async with self._server:
                await self._server.serve_forever()
        finally:
            writer.cancel()
            batcher.cancel()
            if self.on_batch is not None and self._pending_ingest:
                await asyncio.to_thread(self.on_batch)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        buffer = bytearray()
        try:
            while data := await reader.read(65536):
                buffer += data
                for raw in frames(buffer):
                    self.stats.received += 1
                    response = await self._receive(raw)
                    writer.write(START + response + END)
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the sender went away; everything acknowledged was already stored
        finally:
            with contextlib.suppress(Exception):
                writer.close()
                await writer.wait_closed()

    async def _receive(self, raw: bytes) -> bytes:
        assert self._queue is not None
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        await self._queue.put((raw, future))
        try:
            stored = await future
        except Exception:
            error = StorageUnavailable("the message was not stored; send it again")
            self._count("AR")
            return ack(None, "AR", error)
        self._count(stored.ack_code)
        return ack(stored.message, stored.ack_code, stored.error)

    def _count(self, code: str) -> None:
        assert self.stats.acked is not None
        self.stats.acked[code] = self.stats.acked.get(code, 0) + 1

    async def _writer(self) -> None:
        """Group commit: take what is waiting (up to GROUP_MAX), store it in one transaction."""
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            while len(batch) < GROUP_MAX and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await asyncio.to_thread(self._store, [raw for raw, _ in batch])
            except Exception as exc:
                log.error("storing %d messages failed (%s)", len(batch), type(exc).__name__)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
            self._pending_ingest += sum(
                1 for r in results if r.ack_code == "AA" and not r.duplicate
            )

    def _store(self, raws: list[bytes]) -> list[Stored]:
        with get_engine(self.settings).begin() as conn:
            return store_messages(conn, raws, "mllp", self.settings.hl7_assigning_authority)

    async def _batcher(self) -> None:
        """Hand stored messages to ingest every N messages or every few seconds."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.05)
            due = time.monotonic() - last >= self.settings.hl7_batch_seconds
            if self.on_batch is None or not self._pending_ingest:
                last = time.monotonic() if not self._pending_ingest else last
                continue
            if self._pending_ingest >= self.settings.hl7_batch_size or due:
                self._pending_ingest = 0
                self.stats.batches += 1
                try:
                    await asyncio.to_thread(self.on_batch)
                except Exception as exc:
                    log.error("ingest run failed (%s); messages stay queued", type(exc).__name__)
                last = time.monotonic()
