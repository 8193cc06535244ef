"""Splitting a file into messages: the fast forms of the split (no `^` alternative, a
substring test before the batch-segment regex) cut exactly where the plain regexes cut."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from openslots.connectors.hl7.files import BATCH_SEGMENT, split_messages

# The regexes as they were before the fast forms: the reference.
MESSAGE_START = re.compile(rb"(?:^|[\r\n])(?=MSH)")


def reference_split(data: bytes) -> list[bytes]:
    def messages_in(data: bytes) -> list[bytes]:
        if BATCH_SEGMENT.search(data):
            data = BATCH_SEGMENT.sub(b"", data)
        parts = MESSAGE_START.split(data)
        return [p.strip(b"\r\n") for p in parts if p.strip()]

    data = data.removeprefix(b"\xef\xbb\xbf")
    if b"\x0b" not in data:
        return messages_in(data)
    messages: list[bytes] = []
    for block in re.compile(rb"\x0b(.*?)\x1c\r?", re.S).findall(data):
        several = messages_in(block)
        messages += several if len(several) > 1 or BATCH_SEGMENT.search(block) else [block]
    return [m for m in messages if m.strip()]


PIECES = [b"MSH|^~\\&|A|B", b"PID|1", b"FHS|^~\\&", b"BHS|x", b"BTS|1", b"FTS|1", b"MS", b"H"]
files = st.lists(
    st.sampled_from(
        [*PIECES, b"\r", b"\n", b"\r\n", b"\x0b", b"\x1c", b"\x1c\r", b" ", b"\xef\xbb\xbf"]
    ),
    max_size=30,
).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(files)
def test_split_messages_cuts_where_the_plain_regexes_cut(data: bytes) -> None:
    assert split_messages(data) == reference_split(data)
