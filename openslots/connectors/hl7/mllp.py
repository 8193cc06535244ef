"""An MLLP transport for EHR interfaces: many connections at once, many messages per connection.

The listener frames and unframes; what a message means, where it is stored and what its ACK
says belong to the handler it is given (python-hl7's `mllp/` keeps the same split). Messages
from all connections are handed over in groups every few milliseconds, so a handler that
stores a group in one transaction costs one commit per burst, not one per message; each
message is answered only once its group was handled. New work is handed to ingest in batches
(every N messages or every few seconds), never one flow run per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

START, END = b"\x0b", b"\x1c\r"
MAX_FRAME = 16 * 1024 * 1024
GROUP_MAX = 500
# How long a group waits for the other open connections' next messages before it is handed
# over (PostgreSQL's commit_delay, for the same reason): senders that wait for their ACK
# return together, so without it 8 senders split into two cohorts of 4 that alternate, and
# every store costs its round trips for half the messages it could carry. A group is handed
# over as soon as every open connection has a message in it, so a lone sender never waits.
GROUP_LINGER = 0.005
log = logging.getLogger("openslots.mllp")


@dataclass(frozen=True, slots=True)
class Reply:
    """What goes back for one message: the response, its ACK code (for the stats) and whether
    the message is new work for ingest (it counts toward the next hand-over)."""

    response: bytes
    code: str
    new: bool = False


class MessageHandler(Protocol):
    """What the listener is handed: it decides, stores and answers; the listener only carries."""

    def handle(self, raws: list[bytes]) -> list[Reply]:
        """One reply per message, in order; called in a worker thread, one group at a time."""
        ...

    def refuse(self, raw: bytes) -> Reply:
        """The answer to a message of a group that `handle` failed on (e.g. AR: send again)."""
        ...


@dataclass
class ListenerStats:
    connections: int = 0
    received: int = 0
    acked: dict[str, int] | None = None
    batches: int = 0

    def __post_init__(self) -> None:
        self.acked = {"AA": 0, "AE": 0, "AR": 0}


def frames(buffer: bytearray) -> list[bytes]:
    r"""Take every complete MLLP frame out of `buffer` (bytes before a start block are junk).

    A frame ends at 0x1C: the 0x0D after it is taken when there, not waited for (senders that
    omit it are common in the field, and wait for the ACK before sending more).

    Example:
        >>> buffer = bytearray(b"junk\x0bMSH|A\x1c\r\x0bMSH|B\x1c\x0bMSH|C")
        >>> frames(buffer), bytes(buffer)
        ([b'MSH|A', b'MSH|B'], b'\x0bMSH|C')
    """
    found: list[bytes] = []
    while True:
        start = buffer.find(START)
        if start < 0:
            buffer.clear()
            return found
        end = buffer.find(END[:1], start + 1)
        if end < 0:
            del buffer[:start]
            if len(buffer) > MAX_FRAME:
                buffer.clear()
            return found
        found.append(bytes(buffer[start + 1 : end]))
        del buffer[: end + (len(END) if buffer[end : end + len(END)] == END else 1)]


class MllpListener:
    """Serve MLLP on `host:port` (0: any free port), answering each message with `handler`.

    `openslots hl7 listen` hands it `StoreThenAck` (tasks/hl7_receive.py); a test hands it any
    object with `handle` and `refuse`, no database needed.
    """

    def __init__(
        self,
        handler: MessageHandler,
        host: str = "127.0.0.1",
        port: int = 2575,
        *,
        on_batch: Callable[[], object] | None = None,
        batch_size: int = 20_000,
        batch_seconds: float = 5.0,
    ):
        self.handler = handler
        self.host, self.port = host, port
        self.on_batch = on_batch
        self.batch_size, self.batch_seconds = batch_size, batch_seconds
        self.stats = ListenerStats()
        self._queue: asyncio.Queue[tuple[bytes, asyncio.Future[Reply]]] | None = None
        self._pending_ingest = 0
        self._open = 0  # connections open now: each has at most one message waiting
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
            close = getattr(self.handler, "close", None)  # a handler may hold a connection
            if close is not None:
                await asyncio.to_thread(close)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        self._open += 1
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
            pass  # the sender went away; everything acknowledged was already handled
        except Exception as exc:  # the handler could not even refuse: the sender must resend
            log.error("closing a connection without a reply (%s)", type(exc).__name__)
        finally:
            self._open -= 1
            with contextlib.suppress(Exception):
                writer.close()
                await writer.wait_closed()

    async def _receive(self, raw: bytes) -> bytes:
        assert self._queue is not None
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        await self._queue.put((raw, future))
        reply = await future
        self._count(reply.code)
        return reply.response

    def _count(self, code: str) -> None:
        assert self.stats.acked is not None
        self.stats.acked[code] = self.stats.acked.get(code, 0) + 1

    async def _writer(self) -> None:
        """Group commit: take what is waiting (up to GROUP_MAX), hand it to the handler at once."""
        assert self._queue is not None
        while True:
            batch = await self._group(self._queue)
            raws = [raw for raw, _ in batch]
            try:
                replies = await asyncio.to_thread(self._handle, raws)
            except Exception as exc:
                log.error("handling %d messages failed (%s)", len(batch), type(exc).__name__)
                try:
                    replies = [self.handler.refuse(raw) for raw in raws]
                except Exception as refused:  # no answer at all: their connections are closed
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(refused)
                    continue
            for (_, future), reply in zip(batch, replies, strict=True):
                if not future.done():
                    future.set_result(reply)
            self._pending_ingest += sum(reply.new for reply in replies)

    async def _group(
        self, queue: asyncio.Queue[tuple[bytes, asyncio.Future[Reply]]]
    ) -> list[tuple[bytes, asyncio.Future[Reply]]]:
        """What is waiting, plus what the other open connections send within GROUP_LINGER."""
        batch = [await queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GROUP_LINGER
        while len(batch) < GROUP_MAX:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            left = deadline - loop.time()
            if len(batch) >= self._open or left <= 0:
                break
            try:
                # asyncio.timeout, not wait_for: wait_for wraps the get in a task of its own
                # (Python 3.11), once per message of every group.
                async with asyncio.timeout(left):
                    batch.append(await queue.get())
            except TimeoutError:
                break
        return batch

    def _handle(self, raws: list[bytes]) -> list[Reply]:
        replies = self.handler.handle(raws)
        if len(replies) != len(raws):  # a reply to the wrong message is worse than none
            raise ValueError(f"the handler answered {len(replies)} of {len(raws)} messages")
        return replies

    async def _batcher(self) -> None:
        """Hand new work to ingest every `batch_size` messages or every `batch_seconds`."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.05)
            due = time.monotonic() - last >= self.batch_seconds
            if self.on_batch is None or not self._pending_ingest:
                last = time.monotonic() if not self._pending_ingest else last
                continue
            if self._pending_ingest >= self.batch_size or due:
                self._pending_ingest = 0
                self.stats.batches += 1
                try:
                    await asyncio.to_thread(self.on_batch)
                except Exception as exc:
                    log.error("ingest run failed (%s); messages stay queued", type(exc).__name__)
                last = time.monotonic()
