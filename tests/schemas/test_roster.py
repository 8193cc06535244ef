"""Roster validation on real `read_csv` output: every rule names line, field and rule."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from openslots.connectors.csv_source import iter_chunks, sniff_layout
from openslots.errors import RosterFileError
from openslots.schemas.roster import header_key, validate_chunk
from tests.factories import HEADER, person, roster_file


def validate_file(path: Path, chunk_size: int = 1000):
    """All chunks of a file through the real reader and validator."""
    layout = sniff_layout(path)
    accepted, rejections, warnings, total = [], [], [], 0
    for first_line, chunk, _done in iter_chunks(path, layout, chunk_size):
        result = validate_chunk(chunk, first_line, "US")
        accepted.append(result.accepted)
        rejections += result.rejections
        warnings += result.warnings
        total += result.total_rows
    return pd.concat(accepted), rejections, warnings, total


def findings(rejections) -> set[tuple[int, str, str]]:
    return {(r.line, r.field, r.rule) for r in rejections}


def test_valid_rows_are_normalised(tmp_path: Path) -> None:
    path = roster_file(
        tmp_path / "r.csv",
        [
            person(
                1,
                email="  Mixed.Case@Example.ORG ",
                first_name=" José ",
                mobile_phone="+1 212 555 0102",
            ),
            person(2, client_id="007", last_name="O'Brien-Núñez", mobile_phone=""),
        ],
    )
    accepted, rejections, warnings, total = validate_file(path)
    assert (rejections, warnings, total) == ([], [], 2)
    assert accepted["email"].tolist() == ["mixed.case@example.org", "client2@example.org"]
    assert accepted["first_name"].tolist()[0] == "José"
    assert accepted["client_id"].tolist()[1] == "007"  # leading zeros survive
    assert accepted["mobile_phone"].tolist() == ["+12125550102", ""]
    assert accepted["line"].tolist() == [2, 3]


@pytest.mark.parametrize(
    ("override", "field", "rule"),
    [
        ({"client_id": ""}, "client_id", "required"),
        ({"first_name": ""}, "first_name", "required"),
        ({"last_name": "  "}, "last_name", "required"),
        ({"email": ""}, "email", "required"),
        ({"date_of_birth": ""}, "date_of_birth", "required"),
        ({"first_name": "R2D2"}, "first_name", "name_characters"),
        ({"last_name": "Smith;"}, "last_name", "name_characters"),
        ({"date_of_birth": "03/04/1971"}, "date_of_birth", "date_format"),
        ({"date_of_birth": "1971-3-4"}, "date_of_birth", "date_format"),
        ({"date_of_birth": "2023-02-30"}, "date_of_birth", "real_date"),
        (
            {"date_of_birth": (dt.date.today() + dt.timedelta(days=1)).isoformat()},
            "date_of_birth",
            "not_in_future",
        ),
        ({"date_of_birth": "1890-01-01"}, "date_of_birth", "not_over_130_years"),
        ({"email": "no-at-sign.example.org"}, "email", "email_format"),
        ({"email": "a@b"}, "email", "email_format"),
    ],
)
def test_each_rule_rejects_with_line_field_and_rule(
    tmp_path: Path, override: dict[str, str], field: str, rule: str
) -> None:
    path = roster_file(tmp_path / "r.csv", [person(1), person(2, **override), person(3)])
    accepted, rejections, _, total = validate_file(path)
    assert findings(rejections) == {(3, field, rule)}
    assert total == 3 and len(accepted) == 2
    # The message names the rule's expectation, never the rejected value.
    for value in override.values():
        if value.strip():
            assert value not in rejections[0].message


def test_every_problem_of_a_row_and_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = roster_file(
        tmp_path / "r.csv",
        [
            person(1, first_name="", email="bad", date_of_birth="1/2/1990"),
            person(2),
            person(3, last_name="4"),
        ],
    )
    _, rejections, _, total = validate_file(path)
    assert findings(rejections) == {
        (2, "first_name", "required"),
        (2, "email", "email_format"),
        (2, "date_of_birth", "date_format"),
        (4, "last_name", "name_characters"),
    }
    assert total == 3


def test_unusable_phone_is_a_warning_not_a_rejection(tmp_path: Path) -> None:
    path = roster_file(tmp_path / "r.csv", [person(1, mobile_phone="555")])
    accepted, rejections, warnings, _ = validate_file(path)
    assert rejections == []
    assert findings(warnings) == {(2, "mobile_phone", "mobile_number")}
    assert accepted["mobile_phone"].tolist() == [""]


def test_guardian_names_come_together(tmp_path: Path) -> None:
    header = [*HEADER, "Guardian First Name", "Guardian Last Name"]
    path = roster_file(
        tmp_path / "r.csv",
        [
            [*person(1), "Gina", "Example"],
            [*person(2), "Gina", ""],
        ],
        header=header,
    )
    accepted, rejections, _, _ = validate_file(path)
    assert findings(rejections) == {(3, "guardian_last_name", "guardian_names_together")}
    assert accepted["guardian_first_name"].tolist() == ["Gina"]


def test_headers_match_loosely_crlf_bom_and_quoted_commas(tmp_path: Path) -> None:
    header = [
        "\ufeffclient_id",
        "FIRST NAME",
        "last_name",
        "Date Of Birth",
        "E-mail",
        "mobile phone",
    ]
    path = roster_file(
        tmp_path / "r.csv",
        [person(1, last_name="Smith, Jr")],
        header=header,
        newline="\r\n",
        encoding="utf-8",
    )
    accepted, rejections, _, _ = validate_file(path)
    assert rejections == []  # a suffix after a comma is a name
    assert accepted["last_name"].tolist() == ["Smith, Jr"]  # the comma survived the quotes
    path = roster_file(tmp_path / "r2.csv", [person(1)], header=header, newline="\r\n")
    accepted, rejections, _, _ = validate_file(path)
    assert rejections == [] and len(accepted) == 1


def test_windows_1252_and_semicolons_from_excel(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    text = ";".join(HEADER) + "\r\n" + ";".join(person(1, first_name="Zoë")) + "\r\n"
    path.write_bytes(text.encode("cp1252"))
    accepted, rejections, _, _ = validate_file(path)
    assert rejections == []
    assert accepted["first_name"].tolist() == ["Zoë"]


def test_blank_rows_are_skipped_and_line_numbers_stay_true(tmp_path: Path) -> None:
    path = roster_file(
        tmp_path / "r.csv", [person(1), ["", "", "", "", "", ""], person(3), person(4, email="x")]
    )
    accepted, rejections, _, total = validate_file(path, chunk_size=2)
    assert total == 3
    assert accepted["line"].tolist() == [2, 4]
    assert findings(rejections) == {(5, "email", "email_format")}


def test_missing_required_column_fails_the_whole_file(tmp_path: Path) -> None:
    path = roster_file(tmp_path / "r.csv", [person(1)[:4]], header=HEADER[:4])
    with pytest.raises(RosterFileError) as error:
        sniff_layout(path)
    assert error.value.column == "email"
    assert "email" in str(error.value)


def test_extra_fields_reject_the_row_and_trailing_delimiters_do_not(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(
        ",".join(HEADER)
        + "\n"
        + ",".join(person(1))
        + ",\n"  # Excel's trailing delimiter on the first data row
        + ",".join(person(2))
        + ",extra\n"  # an unquoted comma inside a value
        + ",".join(person(3))
        + ",,\n"
    )
    accepted, rejections, _, total = validate_file(path)
    assert total == 3 and accepted["line"].tolist() == [2, 4]
    assert findings(rejections) == {(3, "row", "extra_fields")}
    assert accepted["client_id"].tolist() == ["00001", "00003"]  # nothing shifted


def test_far_too_many_fields_fail_the_file_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(
        "\n\n"
        + ",".join(HEADER)
        + "\n"
        + ",".join(person(1))
        + "\n"
        + ",".join(person(2))
        + "," * 40
        + "x\n"
    )
    with pytest.raises(RosterFileError) as error:
        validate_file(path)
    assert error.value.line == 5  # two blank lines, the header, line 4, then this one


def test_messy_exports_still_read(tmp_path: Path) -> None:
    # NBSP inside header names, a blank line before the header, a row with only a note.
    header = [
        "Client\u00a0ID",
        "First Name",
        "Last Name",
        "Date of Birth",
        "E-mail\u00a0",
        "Mobile Phone",
        "Notes",
    ]
    path = tmp_path / "r.csv"
    path.write_text(
        "\n" + ",".join(header) + "\n" + ",".join([*person(1), ""]) + "\n" + ",,,,,,call back\n"
    )
    accepted, rejections, _, total = validate_file(path)
    assert total == 2 and accepted["line"].tolist() == [3]
    assert {(line, rule) for line, _, rule in findings(rejections)} == {(4, "required")}


def test_late_windows_1252_and_utf16(tmp_path: Path) -> None:
    rows = [person(n) for n in range(1, 20_001)] + [person(20_001, first_name="José")]
    path = roster_file(tmp_path / "big.csv", rows, encoding="cp1252")
    assert path.stat().st_size > 1 << 20
    accepted, rejections, _, _ = validate_file(path, chunk_size=5000)
    assert rejections == [] and accepted["first_name"].iloc[-1] == "José"
    utf16 = roster_file(tmp_path / "u16.csv", [person(1, first_name="Zoë")], encoding="utf-16")
    accepted, rejections, _, _ = validate_file(utf16)
    assert rejections == [] and accepted["first_name"].tolist() == ["Zoë"]


def test_decomposed_accents_and_control_characters(tmp_path: Path) -> None:
    import unicodedata

    nfd = unicodedata.normalize("NFD", "José")
    path = roster_file(
        tmp_path / "r.csv",
        [
            person(1, first_name=nfd),
            person(2, client_id="A1\x00"),
            person(3, last_name="Tab\tName"),
        ],
    )
    accepted, rejections, _, _ = validate_file(path)
    assert accepted["first_name"].tolist() == ["José"]
    assert accepted["first_name"].iloc[0] == unicodedata.normalize("NFC", "José")
    assert findings(rejections) == {
        (3, "client_id", "control_characters"),
        (4, "last_name", "control_characters"),
    }


def test_quoted_line_breaks_across_chunk_boundaries_keep_line_numbers(tmp_path: Path) -> None:
    rows = [person(n) for n in range(1, 10)]
    rows[3][2] = "Multi\nLine"  # a quoted value with a line break: one spreadsheet row
    rows[6][4] = "bad"
    path = roster_file(tmp_path / "r.csv", rows)
    _, rejections, _, total = validate_file(path, chunk_size=2)
    assert total == 9
    assert findings(rejections) == {
        (5, "last_name", "control_characters"),
        (8, "email", "email_format"),
    }


def test_header_key_ignores_case_spaces_underscores_bom() -> None:
    assert header_key("\ufeffDate_of birth") == header_key("DATE-OF\u00a0BIRTH") == "dateofbirth"
