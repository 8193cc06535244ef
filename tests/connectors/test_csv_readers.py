"""pyarrow's reader and pandas' give the same chunks, or pandas reads the file.

`iter_chunks` reads UTF-8 files with pyarrow and falls back to pandas' C parser for a row
pyarrow refuses; what a user sees (lines, values, flags, errors) must not depend on which
reader read the file. Generated files mix quoting, delimiters inside values, ragged rows, blank
lines, line endings, a byte-order mark and white space.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from openslots.connectors import csv_source
from openslots.connectors.csv_source import CsvLayout, _pandas_chunks, iter_chunks, sniff_layout
from openslots.errors import RosterFileError
from tests.factories import HEADER

Reader = Callable[[Path, CsvLayout, int], Iterator[tuple[int, pd.DataFrame, float]]]

EXAMPLES = int(os.environ.get("OPENSLOTS_TEST_CSV_EXAMPLES", "25"))
HEAD = ",".join(HEADER).encode()
FIELD = st.text(alphabet=st.sampled_from('ab é0 ,;"\n\r\t\u2003'), max_size=6)


@st.composite
def roster_bytes(draw: st.DrawFn) -> bytes:
    delimiter = draw(st.sampled_from([",", ";"]))
    header = list(HEADER) + draw(st.lists(st.sampled_from(["Notes", "Plan"]), max_size=2))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=newline)
    writer.writerow(header)
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["row", "row", "row", "ragged", "raw", "blank"]))
        if kind == "blank":
            out.write(draw(st.sampled_from(["", delimiter * len(header), "  "])) + newline)
            continue
        width = len(header) if kind != "ragged" else draw(st.integers(1, len(header) + 3))
        fields = draw(st.lists(FIELD, min_size=width, max_size=width))
        if kind == "raw":  # no quoting at all: stray quotes, delimiters, newlines as they come
            out.write(delimiter.join(fields) + newline)
        else:
            writer.writerow(fields)
    text = out.getvalue()
    if draw(st.booleans()):
        text = text.rstrip("\r\n")
    return (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + text.encode()


def _read(read: Reader, path: Path, chunk_size: int) -> list[tuple[int, pd.DataFrame]] | str:
    try:
        layout = sniff_layout(path)
        return [(line, chunk) for line, chunk, _ in read(path, layout, chunk_size)]
    except RosterFileError as exc:
        return f"{exc} line={exc.line}"


def _same(path: Path, chunk_size: int) -> None:
    got = _read(iter_chunks, path, chunk_size)
    expected = _read(_pandas_chunks, path, chunk_size)
    if isinstance(expected, str) or isinstance(got, str):
        assert got == expected
        return
    assert [line for line, _ in got] == [line for line, _ in expected]
    for (_, chunk), (_, wanted) in zip(got, expected, strict=True):
        pd.testing.assert_frame_equal(chunk, wanted)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=roster_bytes(), chunk_size=st.integers(1, 5))
@example(data=HEAD + b'\n1, "x,y",a,b,c,d\n', chunk_size=1)  # pyarrow: 7 fields; pandas: 6
@example(data=HEAD + b"\r,,,,,0\r", chunk_size=1)  # pandas alone: the shifted first row
@example(data=HEAD + b'\n,,,,,"\n', chunk_size=1)  # a quote never closed: pyarrow took it
def test_both_readers_give_the_same_chunks(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, chunk_size: int
) -> None:
    path = tmp_path_factory.mktemp("csv") / "r.csv"
    path.write_bytes(data)
    _same(path, chunk_size)


def test_a_ragged_row_after_full_chunks_is_read_by_pandas_from_where_pyarrow_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyarrow gives the chunks before the short row (its blocks made small here), pandas the
    rest: every line once, in order, the short row's missing fields empty."""
    monkeypatch.setattr(csv_source, "ARROW_BLOCK", 256)
    rows = [f"{n},A{n},B,2000-01-01,a{n}@example.org,,," for n in range(1, 200)]
    rows[150] = "151,Short,Row"
    path = tmp_path / "r.csv"
    path.write_text(",".join(HEADER) + "\n" + "\n".join(rows) + "\n")
    layout = sniff_layout(path)
    chunks = list(iter_chunks(path, layout, 10))
    assert [line for line, _, _ in chunks] == list(range(2, 201, 10))
    frame = pd.concat([chunk for _, chunk, _ in chunks])
    assert frame["client_id"].tolist() == [str(n) for n in range(1, 200)]
    assert frame.loc[150, "first_name"] == "Short"
    assert frame.loc[150, "email"] == ""
    _same(path, 10)


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252"])
def test_lines_ending_in_a_lone_cr_keep_their_columns(tmp_path: Path, encoding: str) -> None:
    """Classic Mac OS line ends: pandas' C parser, not told, read the first row after the
    header one field short (",,0" as ",0"); cp1252 is read by pandas, UTF-8 by pyarrow."""
    path = tmp_path / "r.csv"
    text = ",".join(HEADER) + "\r" + ",,Rémy,2000-01-01,,0\r" + ",,B,2000-01-01,,1\r"
    path.write_bytes(text.encode(encoding))
    layout = sniff_layout(path)
    assert layout.cr_only
    ((_, chunk, _),) = list(iter_chunks(path, layout, 10))
    assert chunk["last_name"].tolist() == ["Rémy", "B"]
    assert chunk["mobile_phone"].tolist() == ["0", "1"]


def test_read_ahead_hands_items_in_order_raises_where_asked_and_stops_when_left() -> None:
    import threading

    from openslots.connectors.csv_source import read_ahead

    assert list(read_ahead(iter(range(50)))) == list(range(50))

    def failing() -> Iterator[int]:
        yield 1
        raise RosterFileError("the file is not valid CSV", line=7)

    items = read_ahead(failing())
    assert next(items) == 1
    with pytest.raises(RosterFileError, match="not valid CSV"):
        next(items)

    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            n = 0
            while True:
                n += 1
                yield n
        finally:
            closed.set()

    items = read_ahead(endless())
    assert next(items) == 1
    items.close()  # the caller stopped: the thread ends and closes what it read from
    assert closed.wait(5)
    assert not any(t.name == "openslots-read-ahead" for t in threading.enumerate())
