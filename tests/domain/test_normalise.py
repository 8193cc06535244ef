"""Row normalisation: hand-written rows in and out, and the one-value forms agree with the
vectorised ones on any text."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from openslots.domain.contact import EMAIL_PATTERN, clean_text, normalise_email
from openslots.domain.normalise import clean_value, email_value, normalise_rows

COLUMNS = ["first_name", "email", "mobile_phone", "date_of_birth", "missing"]


def test_rows_by_hand() -> None:
    raw = pd.DataFrame(
        {
            # A decomposed é (macOS export) and Excel's non-breaking space.
            "first_name": [" Jose\u0301\u00a0", "Ana", None],
            "email": ["  Mixed.Case@Example.ORG ", "ana@example.org", ""],
            "mobile_phone": ["(212) 555-0102", "12", ""],
            "date_of_birth": ["1970-01-01", "2023-02-30", "03/04/1971"],
        },
        dtype="str",
    )
    frame, bad_phone = normalise_rows(raw, COLUMNS, "US", {"date_of_birth": "dob"})
    assert frame["first_name"].tolist() == ["José", "Ana", ""]
    assert frame["email"].tolist() == ["mixed.case@example.org", "ana@example.org", ""]
    assert frame["mobile_phone"].tolist() == ["+12125550102", "", ""]
    assert bad_phone.tolist() == [False, True, False]  # an empty phone is no warning
    assert frame["missing"].tolist() == ["", "", ""]  # a column the file lacks is empty
    assert frame["dob"].tolist()[0] == pd.Timestamp("1970-01-01")
    assert frame["dob"].isna().tolist() == [False, True, True]  # not real / not YYYY-MM-DD
    assert frame["date_of_birth"].tolist() == ["1970-01-01", "2023-02-30", "03/04/1971"]


def test_each_date_column_is_parsed_into_its_own_target() -> None:
    raw = pd.DataFrame({"a": ["2001-02-03"], "b": [""]}, dtype="str")
    frame, _ = normalise_rows(
        raw, ["a", "b", "email", "mobile_phone"], "US", {"a": "a_dob", "b": "b_dob"}
    )
    assert frame["a_dob"].tolist() == [pd.Timestamp("2001-02-03")]
    assert frame["b_dob"].isna().all()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=12), min_size=1, max_size=20))
def test_one_value_agrees_with_the_column(values: list[str]) -> None:
    column = pd.Series(values, dtype="str")
    assert clean_text(column).tolist() == [clean_value(v) for v in values]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.from_regex(EMAIL_PATTERN, fullmatch=True),
            st.sampled_from(["", " ", "\u00a0", "\t"]),
        ).map(lambda t: t[1] + t[0].upper() + t[1]),
        min_size=1,
        max_size=10,
    )
)
def test_one_email_agrees_with_the_column(values: list[str]) -> None:
    column = pd.Series(values, dtype="str")
    assert normalise_email(column).tolist() == [email_value(v) for v in values]
    assert all(e == e.strip().lower() for e in normalise_email(column))
