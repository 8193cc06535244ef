"""A minimal MLLP client for tests (hl7apy ships a server but no client)."""

from __future__ import annotations

import socket

START, END = b"\x0b", b"\x1c\r"


def frame(message: bytes | str) -> bytes:
    data = message.encode() if isinstance(message, str) else message
    return START + data + END


def read_ack(sock: socket.socket) -> str:
    data = b""
    while not data.endswith(END):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the ACK")
        data += chunk
    return data[1:-2].decode()


def ack_code(ack: str) -> str:
    msa = next(seg for seg in ack.split("\r") if seg.startswith("MSA"))
    return msa.split("|")[1]


def send(port: int, messages: list[bytes | str], split: int | None = None) -> list[str]:
    """Send on one connection, each message after the previous ACK; `split` cuts every frame
    into pieces of that many bytes, sent separately (as slow networks deliver them)."""
    acks = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        for message in messages:
            data = frame(message)
            pieces = (
                [data]
                if split is None
                else [data[i : i + split] for i in range(0, len(data), split)]
            )
            for piece in pieces:
                sock.sendall(piece)
            acks.append(read_ack(sock))
    return acks
