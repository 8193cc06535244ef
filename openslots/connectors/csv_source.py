"""Roster CSV files as a stream of chunks: encoding and delimiter sniffed, header mapped.

Everything is read as text (`dtype=str`, `keep_default_na=False`) so leading zeros of Client
IDs and phone numbers survive. Line numbers are the ones a spreadsheet shows: header = line 1.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from openslots.errors import RosterFileError
from openslots.schemas.roster import REQUIRED_COLUMNS, map_header

SNIFF_BYTES = 1 << 20
DELIMITERS = (",", ";", "\t", "|")


@dataclass(frozen=True)
class CsvLayout:
    encoding: str
    delimiter: str
    columns: dict[str, str]  # file header -> canonical column
    ignored: tuple[str, ...]  # header names we do not use


def sniff_layout(path: Path) -> CsvLayout:
    """Encoding (UTF-8, with or without BOM, else Windows-1252 as Excel writes), delimiter,
    and the header mapping. Raises RosterFileError naming a missing required column."""
    try:
        head = (
            path.read_bytes()[:SNIFF_BYTES] if path.stat().st_size <= SNIFF_BYTES else _head(path)
        )
    except FileNotFoundError:
        raise RosterFileError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise RosterFileError(f"is a directory, not a CSV file: {path}") from None
    if not head.strip():
        raise RosterFileError("the file is empty; expected a header line", line=1)
    encoding = "utf-8-sig"
    try:
        # A multi-byte character may be cut at the sniff boundary: ignore only the tail.
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:
            encoding = "cp1252"
    text = head.decode(encoding, errors="ignore")
    first_line = text.splitlines()[0] if text.splitlines() else ""
    delimiter = max(DELIMITERS, key=first_line.count)
    header = next(csv.reader(io.StringIO(first_line), delimiter=delimiter), [])
    columns = map_header(header)
    missing = [name for name in REQUIRED_COLUMNS if name not in columns.values()]
    if missing:
        raise RosterFileError(
            f"required column missing: {', '.join(missing)} (header names match ignoring case, "
            "spaces and underscores; see `openslots roster template`)",
            line=1,
            column=missing[0],
        )
    ignored = tuple(name for name in header if name not in columns)
    return CsvLayout(encoding, delimiter, columns, ignored)


def _head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(SNIFF_BYTES)


def iter_chunks(
    path: Path, layout: CsvLayout, chunk_size: int
) -> Iterator[tuple[int, pd.DataFrame, float]]:
    """Yield (line of the chunk's first row, chunk with canonical names, fraction of file read)."""
    size = max(path.stat().st_size, 1)
    handle = path.open("rb")
    reader = pd.read_csv(
        handle,
        dtype=str,
        keep_default_na=False,
        na_filter=False,
        encoding=layout.encoding,
        sep=layout.delimiter,
        # No usecols: with it, pandas silently drops a row's extra fields, and an unquoted
        # comma in a name would shift values into the wrong columns unnoticed.
        chunksize=chunk_size,
        skip_blank_lines=False,
        engine="c",
    )
    line = 2
    try:
        with handle, reader:
            for chunk in reader:
                done = min(handle.tell() / size, 1.0)
                yield line, chunk[list(layout.columns)].rename(columns=layout.columns), done
                line += len(chunk)
    except pd.errors.ParserError as exc:
        raise RosterFileError(_parser_message(exc), line=_parser_line(exc)) from None
    except UnicodeDecodeError:
        raise RosterFileError(
            f"the file is not valid {layout.encoding} text after the first megabyte; "
            "save it as 'CSV UTF-8'"
        ) from None


def _parser_line(exc: Exception) -> int | None:
    words = str(exc).replace(",", " ").split()
    for before, word in itertools.pairwise(words):
        if before == "line" and word.isdigit():
            return int(word)
    return None


def _parser_message(exc: Exception) -> str:
    text = str(exc)
    if "Expected" in text and "fields" in text:
        return (
            "the row has more fields than the header; quote values that contain the "
            "delimiter, or remove the extra separators"
        )
    if "EOF" in text:
        return "a quoted value is never closed"
    return "the file is not valid CSV"
