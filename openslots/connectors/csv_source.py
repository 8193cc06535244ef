"""Roster CSV files as a stream of chunks: encoding and delimiter sniffed, header mapped.

Everything is read as text (`dtype=str`, `keep_default_na=False`) so leading zeros of Client
IDs and phone numbers survive. Line numbers are the ones a spreadsheet shows: header = line 1.
Columns are read by position: unknown header names do no harm, two header columns for one
field (`Email` twice, `First Name` and `first_name`) fail the file naming both, and a few
fields beyond the header are tolerated (Excel's trailing delimiters) and checked per row.

Two readers give the same chunks: pyarrow's CSV reader (~8x faster: reading was most of a
nightly re-sync) for UTF-8 files whose every row has the header's number of fields, and pandas'
C parser for everything else. pyarrow refuses a row with another number of fields; the file is
then read by pandas from the start, the rows already given skipped.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from openslots.errors import RosterFileError
from openslots.schemas.roster import BLANK, EXTRA, REQUIRED_COLUMNS, map_header

SNIFF_BYTES = 1 << 20
DELIMITERS = (",", ";", "\t", "|")
T = TypeVar("T")
EXTRA_SLACK = 16  # fields beyond the header a row may carry before the file is unreadable


@dataclass(frozen=True)
class CsvLayout:
    encoding: str
    delimiter: str
    header_line: int  # 1-based line of the header (blank lines before it are skipped)
    width: int  # number of header fields
    columns: dict[int, str]  # header position -> canonical column
    ignored: tuple[str, ...]  # header names we do not use
    cr_only: bool = False  # lines end in a lone CR (classic Mac OS): pandas must be told


def sniff_layout(path: Path) -> CsvLayout:
    """Encoding (UTF-8 with or without BOM, UTF-16 with BOM, else Windows-1252 as Excel
    writes), delimiter, and the header mapping. Raises RosterFileError naming a missing
    required column."""
    try:
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except FileNotFoundError:
        raise RosterFileError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise RosterFileError(f"is a directory, not a CSV file: {path}") from None
    encoding = _encoding(path, head)
    text = head.decode(encoding, errors="ignore").lstrip("\ufeff")
    lines = text.splitlines()
    if len(head) == SNIFF_BYTES and len(lines) <= 1:
        raise RosterFileError(
            f"the header line is longer than the limit of {SNIFF_BYTES:,} bytes: not a roster "
            "header (see `openslots roster template`)",
            line=1,
        )
    blank_before = 0
    while blank_before < len(lines) and not lines[blank_before].strip(" ,;\t|"):
        blank_before += 1
    if blank_before == len(lines):
        raise RosterFileError("the file is empty; expected a header line", line=1)
    first_line = lines[blank_before]
    delimiter = max(DELIMITERS, key=first_line.count)
    try:
        header = next(csv.reader(io.StringIO(first_line), delimiter=delimiter), [])
    except csv.Error:
        raise RosterFileError(
            "the header line is not valid CSV (a quoted name never closed, or a name longer "
            f"than {csv.field_size_limit():,} characters)",
            line=blank_before + 1,
        ) from None
    columns = _header_columns(header, blank_before + 1)
    mapping = map_header(header)
    missing = [name for name in REQUIRED_COLUMNS if name not in mapping.values()]
    if missing:
        raise RosterFileError(
            f"required column missing: {', '.join(missing)} (header names match ignoring case, "
            "spaces and punctuation; see `openslots roster template`)",
            line=blank_before + 1,
            column=missing[0],
        )
    ignored = tuple(name for name in header if name not in mapping)
    return CsvLayout(
        encoding, delimiter, blank_before + 1, len(header), columns, ignored, _cr_only(text)
    )


def _cr_only(text: str) -> bool:
    """The first line ends in CR without LF. pandas' C parser, not told, drops the first empty
    field of the row after the skipped header (",,0" read as ",0"): a column shift."""
    end = next((i for i, ch in enumerate(text) if ch in "\r\n"), None)
    return end is not None and text[end] == "\r" and text[end + 1 : end + 2] != "\n"


def _header_columns(header: list[str], line: int) -> dict[int, str]:
    """Header position -> canonical column; two positions for one column fail the file."""
    columns: dict[int, str] = {}
    for position, name in enumerate(header):
        canonical = map_header([name]).get(name)
        if canonical is None:
            continue
        first = next((p for p, c in columns.items() if c == canonical), None)
        if first is not None:
            raise RosterFileError(
                f"two header columns for {canonical}: {header[first]!r} (column {first + 1}) "
                f"and {name!r} (column {position + 1}); keep one",
                line=line,
                column=canonical,
            )
        columns[position] = canonical
    return columns


def _is_binary(head: bytes) -> bool:
    """Control bytes that no text CSV holds (NUL, ...) in more than 1% of the first 4 KiB."""
    sample = head[:4096]
    controls = sum(1 for b in sample if b < 0x09 or 0x0E <= b < 0x20)
    return controls > max(8, len(sample) // 100)


def _utf16_without_bom(head: bytes) -> bool:
    """Text in UTF-16 without its byte-order mark: every other byte NUL, the rest readable."""
    sample = head[: 4096 - 4096 % 2]
    for encoding in ("utf-16-le", "utf-16-be"):
        text = sample.decode(encoding, errors="replace")
        readable = sum(1 for ch in text if ch.isprintable() or ch in "\r\n\t")
        if text and readable >= 0.95 * len(text):
            return True
    return False


def _encoding(path: Path, head: bytes) -> str:
    """UTF-8 only when the whole file decodes as UTF-8: a Windows-1252 'é' on the last line of
    a nightly export must not fail the file after a million rows."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise RosterFileError("the file is UTF-32 text; save it as 'CSV UTF-8'")
    if _is_binary(head):
        if _utf16_without_bom(head):
            raise RosterFileError(
                "the file looks like UTF-16 without a byte-order mark; save it as 'CSV UTF-8'"
            )
        raise RosterFileError(
            "the file is not a text CSV file (binary data: a spreadsheet's .xlsx, a PDF...); "
            "export it as 'CSV UTF-8'"
        )
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as handle:
            while block := handle.read(SNIFF_BYTES):
                decoder.decode(block)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return "cp1252"
    return "utf-8-sig"


def iter_chunks(
    path: Path, layout: CsvLayout, chunk_size: int
) -> Iterator[tuple[int, pd.DataFrame, float]]:
    """Yield (line of the chunk's first row, chunk, fraction of the file read).

    The chunk has the canonical columns found in the header plus two flags: `_blank` (every
    field empty, including unknown columns) and `_extra_fields` (non-empty fields past the
    header, i.e. an unquoted delimiter inside a value). Chunks hold `chunk_size` rows (the
    last one fewer) and are indexed by row number from 0, whichever reader read them. The
    next chunk is read while the caller works on this one (`read_ahead`).
    """
    return read_ahead(_chunks(path, layout, chunk_size))


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """`items`, each next one produced in a thread while the caller works on the one before:
    pyarrow parses without the GIL, so on two cores a re-sync hashes one chunk while the next
    is read. At most two items are held besides the caller's. An error is raised where the
    caller asks for that item; a caller that stops early stops the thread."""
    box: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                box.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put("item", item):
                    return
            put("end", None)
        except BaseException as exc:  # handed to the caller, raised there
            put("error", exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="openslots-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = box.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


def _chunks(
    path: Path, layout: CsvLayout, chunk_size: int
) -> Iterator[tuple[int, pd.DataFrame, float]]:
    given = 0
    if layout.encoding == ARROW_ENCODING:
        try:
            for item in _arrow_chunks(path, layout, chunk_size):
                yield item
                given += len(item[1])
            return
        except _NotForArrow:
            pass  # pandas reads the file again, from the rows not given yet
    for line, chunk, done in _pandas_chunks(path, layout, chunk_size):
        if line > layout.header_line + given:
            yield line, chunk, done
        # chunks of equal size from both readers: a given chunk is skipped whole


ARROW_ENCODING = "utf-8-sig"  # pyarrow reads UTF-8 and skips its byte-order mark
ARROW_BLOCK = 1 << 22  # bytes pyarrow parses at a time


class _NotForArrow(Exception):
    """A row pyarrow cannot read as pandas would (another number of fields, a quote left
    open): pandas reads the file."""


def _arrow_chunks(
    path: Path, layout: CsvLayout, chunk_size: int
) -> Iterator[tuple[int, pd.DataFrame, float]]:
    size = max(path.stat().st_size, 1)
    names = [f"f{i}" for i in range(layout.width)]
    handle = path.open("rb")
    try:
        reader = pa_csv.open_csv(
            handle,
            read_options=pa_csv.ReadOptions(
                column_names=names, skip_rows=layout.header_line, block_size=ARROW_BLOCK
            ),
            parse_options=pa_csv.ParseOptions(
                delimiter=layout.delimiter, newlines_in_values=True, ignore_empty_lines=False
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, StopIteration):
        handle.close()
        raise _NotForArrow from None
    line = layout.header_line + 1
    pending: list[pa.RecordBatch] = []
    held = 0
    with handle, reader:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid:
                raise _NotForArrow from None
            pending.append(batch)
            held += batch.num_rows
            while held > chunk_size:  # the file's last row is held until it is checked
                table = pa.Table.from_batches(pending)
                pending = table.slice(chunk_size).to_batches()
                held -= chunk_size
                done = min(handle.tell() / size, 1.0)
                yield line, _arrow_canonical(table.slice(0, chunk_size), layout, line), done
                line += chunk_size
        table = pa.Table.from_batches(pending, schema=reader.schema)
        if held and _quote_left_open(handle, table.column(layout.width - 1)[-1].as_py()):
            raise _NotForArrow
        if held or line == layout.header_line + 1:  # pandas gives a header-only file one chunk
            yield line, _arrow_canonical(table, layout, line), 1.0


def _quote_left_open(handle: BinaryIO, last: str) -> bool:
    """The file may end inside a quoted value: pyarrow then gives the rest of the file as the
    last field (pandas refuses the file). Such a file ends in a quote and that value, quotes
    doubled; a closed quote can look the same only for an empty value (`""`)."""
    tail = ('"' + last.replace('"', '""')).encode()
    handle.seek(max(handle.seek(0, io.SEEK_END) - len(tail), 0))
    return handle.read() == tail


def _arrow_canonical(table: pa.Table, layout: CsvLayout, line: int) -> pd.DataFrame:
    first = line - layout.header_line - 1
    known = pd.DataFrame(
        {
            canonical: table.column(f"f{position}").to_pandas()
            for position, canonical in layout.columns.items()
        }
    )
    known.index = pd.RangeIndex(first, first + table.num_rows)
    known[BLANK] = ~_arrow_any_filled(table)
    known[EXTRA] = False  # pyarrow read exactly the header's number of fields
    return known


def _arrow_any_filled(table: pa.Table) -> np.ndarray:
    """Rows with a field holding more than white space (as `_filled`: pandas' `str.strip` is
    this same pyarrow kernel). Each column is looked at only for the rows no column before it
    filled: usually the first column settles every row."""
    filled = np.zeros(table.num_rows, dtype=bool)
    for column in table.columns:
        open_rows = np.flatnonzero(~filled & (pc.binary_length(column).to_numpy() > 0))
        if len(open_rows):
            stripped = pc.utf8_trim_whitespace(pc.take(column, open_rows))
            filled[open_rows[pc.binary_length(stripped).to_numpy() > 0]] = True
        if filled.all():
            break
    return filled


def _pandas_chunks(
    path: Path, layout: CsvLayout, chunk_size: int
) -> Iterator[tuple[int, pd.DataFrame, float]]:
    size = max(path.stat().st_size, 1)
    names = [f"f{i}" for i in range(layout.width + EXTRA_SLACK)]
    line = layout.header_line + 1
    try:
        # Inside the try: pandas reads the first rows as it opens the file (a quote left open
        # on the first row fails here).
        with (
            path.open("rb") as handle,
            pd.read_csv(
                handle,
                header=None,
                names=names,
                skiprows=layout.header_line,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                encoding=layout.encoding,
                sep=layout.delimiter,
                chunksize=chunk_size,
                skip_blank_lines=False,
                index_col=False,
                engine="c",
                lineterminator="\r" if layout.cr_only else None,
            ) as reader,
        ):
            for chunk in reader:
                done = min(handle.tell() / size, 1.0)
                yield line, _canonical(chunk.fillna(""), layout), done
                line += len(chunk)
    except pd.errors.ParserError as exc:
        raise RosterFileError(_parser_message(exc), line=_parser_line(exc)) from None
    except UnicodeDecodeError:
        raise RosterFileError(f"the file is not valid {layout.encoding} text") from None


def _canonical(chunk: pd.DataFrame, layout: CsvLayout) -> pd.DataFrame:
    known = pd.DataFrame(
        {canonical: chunk[f"f{position}"] for position, canonical in layout.columns.items()},
        index=chunk.index,
    )
    stripped = chunk.apply(_filled)
    extra = stripped[[f"f{i}" for i in range(layout.width, layout.width + EXTRA_SLACK)]]
    known[BLANK] = ~stripped.any(axis=1)
    known[EXTRA] = extra.any(axis=1)
    return known


def _filled(column: pd.Series) -> pd.Series:
    """Fields holding more than white space. Most fields of the columns past the header are
    empty: only non-empty ones are stripped (stripping every field was ~5% of a re-sync)."""
    filled = column != ""
    if filled.any():
        filled &= column.str.strip() != ""
    return filled


def _parser_line(exc: Exception) -> int | None:
    words = str(exc).replace(",", " ").split()
    for before, word in itertools.pairwise(words):
        if before == "line" and word.isdigit():
            return int(word)  # pandas counts the file's own lines, skipped ones included
    return None


def _parser_message(exc: Exception) -> str:
    text = str(exc)
    if "Expected" in text and "fields" in text:
        return (
            f"the row has over {EXTRA_SLACK} more fields than the header; quote values that "
            "contain the delimiter"
        )
    if "EOF" in text:
        return "a quoted value is never closed"
    return "the file is not valid CSV"
