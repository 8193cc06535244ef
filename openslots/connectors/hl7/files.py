"""HL7 files on disk: which files of a drop folder are HL7, and the messages in one file
(MLLP-framed or one after another, batch envelopes dropped). Bytes only: nothing is parsed.
"""

from __future__ import annotations

import re
from pathlib import Path

from openslots.errors import RosterFileError

FRAME = re.compile(rb"\x0b(.*?)\x1c\r?", re.S)
# A message starts with MSH at a segment start. No `^` alternative: a split there would only
# add an empty first part (dropped anyway), and without it `re` scans for the separator
# character first (3x faster on a file of messages).
MESSAGE_START = re.compile(rb"[\r\n](?=MSH)")
# File and batch header/trailer segments (FHS/BHS ... BTS/FTS) wrap messages; they are none.
BATCH_SEGMENT = re.compile(rb"(?:^|(?<=[\r\n]))(?:FHS|BHS|BTS|FTS)[^\r\n]*(?:\r\n|\r|\n)?")
BATCH_TAGS = (b"FHS", b"BHS", b"BTS", b"FTS")
HL7_STARTS = (b"MSH", b"\x0b", b"FHS", b"BHS")
NOT_HL7 = "not HL7: does not start with MSH, an MLLP block (0x0B) or a batch header (FHS/BHS)"


def split_messages(data: bytes) -> list[bytes]:
    """Messages in a file: MLLP-framed, or one after another, each starting with MSH at a
    segment start; FHS/BHS/BTS/FTS batch segments are dropped (they are not messages).

    Anything before the first MSH stays a "message" of its own, so that junk in a file meant
    as HL7 is rejected (AR) rather than lost.
    """
    data = data.removeprefix(b"\xef\xbb\xbf")
    if b"\x0b" not in data:
        return _messages_in(data)
    messages: list[bytes] = []
    for block in FRAME.findall(data):
        # A block is one message as the sender framed it (kept byte for byte), unless it
        # holds a batch or several messages.
        several = _messages_in(block)
        messages += several if len(several) > 1 or _has_batch_segment(block) else [block]
    return [m for m in messages if m.strip()]


def _has_batch_segment(data: bytes) -> bool:
    # The regex tries every position (~4 ms for a file of 200 messages); a substring test
    # finds the usual answer, none, at memory speed, and the regex decides only when needed.
    return any(tag in data for tag in BATCH_TAGS) and BATCH_SEGMENT.search(data) is not None


def _messages_in(data: bytes) -> list[bytes]:
    if _has_batch_segment(data):
        data = BATCH_SEGMENT.sub(b"", data)
    parts = MESSAGE_START.split(data)
    return [p.strip(b"\r\n") for p in parts if p.strip()]


def is_hl7(path: Path) -> bool:
    """Decided by content: MSH (after a UTF-8 BOM and white space), an MLLP block, or FHS/BHS."""
    with path.open("rb") as handle:
        head = handle.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")
    return head.startswith(HL7_STARTS)


def message_files(paths: list[str]) -> tuple[list[Path], list[dict[str, str]]]:
    """(files to read, skipped files with the reason). A file named on the command line or
    ending .hl7 is read whatever it holds (what is not HL7 in it is rejected, AR); any other
    file of a directory is read when its content is HL7, and listed as skipped otherwise."""
    found: list[Path] = []
    skipped: list[dict[str, str]] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            for candidate in sorted(p for p in path.rglob("*") if p.is_file()):
                if candidate.suffix.lower() == ".hl7" or is_hl7(candidate):
                    found.append(candidate)
                else:
                    skipped.append({"path": str(candidate), "reason": NOT_HL7})
        elif path.is_file():
            found.append(path)
        else:
            raise RosterFileError(f"no such file or directory: {path}")
    return found, skipped
