"""Bad roster files fail as a whole with a line that says what is wrong (no value quoted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from openslots.connectors.csv_source import SNIFF_BYTES, sniff_layout
from openslots.errors import RosterFileError
from tests.factories import HEADER, person, roster_file


@pytest.mark.parametrize(
    ("header", "named"),
    [
        ([*HEADER, "Email"], "'Email' (column 5) and 'Email' (column 7)"),
        ([*HEADER, "first_name"], "'First Name' (column 2) and 'first_name' (column 7)"),
    ],
)
def test_two_header_columns_for_one_field_fail_naming_both(
    tmp_path: Path, header: list[str], named: str
) -> None:
    path = roster_file(tmp_path / "r.csv", [[*person(1), "x"]], header=header)
    with pytest.raises(RosterFileError, match="two header columns") as failed:
        sniff_layout(path)
    assert named in str(failed.value)


def test_a_binary_file_is_not_a_text_csv_file(tmp_path: Path) -> None:
    path = tmp_path / "roster.xlsx"
    path.write_bytes(b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)) * 16)
    with pytest.raises(RosterFileError, match="not a text CSV file"):
        sniff_layout(path)


def test_utf16_without_a_byte_order_mark_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(("\r\n".join([",".join(HEADER), ",".join(person(1))]) * 3).encode("utf-16-le"))
    with pytest.raises(RosterFileError, match="UTF-16 without a byte-order mark"):
        sniff_layout(path)


def test_a_header_line_over_the_limit_names_the_line_and_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("Client ID," + "x" * (SNIFF_BYTES + 10) + "\n1,2\n")
    with pytest.raises(RosterFileError, match=f"limit of {SNIFF_BYTES:,} bytes") as failed:
        sniff_layout(path)
    assert failed.value.line == 1


def test_an_empty_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("")
    with pytest.raises(RosterFileError, match="the file is empty"):
        sniff_layout(path)


def test_a_very_long_data_line_is_a_too_long_row_naming_its_line(tmp_path: Path) -> None:
    """No csv-module field limit on data lines: a 5 MB name is read and rejected by its rule."""
    from openslots.connectors.csv_source import iter_chunks
    from openslots.schemas.roster import validate_chunk

    path = roster_file(tmp_path / "r.csv", [person(1, first_name="A" * 5_000_000), person(2)])
    layout = sniff_layout(path)
    ((first_line, chunk, _done),) = list(iter_chunks(path, layout, 1000))
    result = validate_chunk(chunk, first_line, "US")
    assert [(r.line, r.field, r.rule) for r in result.rejections] == [(2, "first_name", "too_long")]
    assert len(result.accepted) == 1
