"""Vectorised normalisation and checks of roster values (names, emails, dates of birth).

Every function takes and returns pandas Series so a chunk of a million rows is handled with
array operations; the patterns are plain enough for both Python's `re` and pyarrow's RE2.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

import pandas as pd

from openslots.domain import clock

# Local part per RFC 5322 "atext" plus dots; a domain of at least two labels.
EMAIL_PATTERN = (
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}"
)
DATE_PATTERN = r"\d{4}-\d{2}-\d{2}"
NAME_SEPARATORS = r"['’\- .]"
MAX_AGE_YEARS = 130
UNKNOWN_DOB = "1970-01-01"  # the seed's recommended placeholder; a valid date like any other


def clean_text(values: pd.Series) -> pd.Series:
    """NFC-normalise (macOS exports decompose accents) and trim white space, including the
    non-breaking spaces Excel likes to leave."""
    text = values.fillna("").astype("str").str.normalize("NFC")
    return text.str.replace("\u00a0", " ", regex=False).str.strip()


def name_key(first: str, last: str) -> str:
    """How names are compared everywhere (database-independent: SQLite's lower() is ASCII-only).

    >>> name_key("ÉMILIE ", "José") == name_key("émilie", "JOSÉ")
    True
    """

    def fold(text: str) -> str:
        folded = unicodedata.normalize("NFC", text.replace("\u00a0", " ")).casefold()
        return _RUNS_OF_SPACE.sub(" ", folded).strip(_SPACE)

    return f"{fold(first)}|{fold(last)}"


# One definition of "space" for both forms: the vectorised one runs in pyarrow, whose regular
# expressions (RE2) know ASCII whitespace only.
_SPACE = " \t\n\r\f\v"
_RUNS_OF_SPACE = re.compile(f"[{_SPACE}]+")


def name_keys(first: pd.Series, last: pd.Series) -> pd.Series:
    """`name_key` for whole columns (values already cleaned by `clean_text`)."""

    def fold(values: pd.Series) -> pd.Series:
        folded = values.str.casefold().str.replace(_RUNS_OF_SPACE.pattern, " ", regex=True)
        return folded.str.strip(_SPACE)

    return fold(first) + "|" + fold(last)


def normalise_email(values: pd.Series) -> pd.Series:
    """Emails as stored and compared: cleaned and lower-cased (`normalise.email_value` for one)."""
    return clean_text(values).str.lower()


def is_valid_email(values: pd.Series) -> pd.Series:
    return values.str.fullmatch(EMAIL_PATTERN).fillna(False).astype(bool)


def is_valid_name(values: pd.Series) -> pd.Series:
    """Letters of any script, joined by apostrophes, hyphens, spaces or dots; starts with one.

    >>> is_valid_name(pd.Series(["José", "O'Brien", "Smith-Jones", "R2D2", "-x"])).tolist()
    [True, True, True, False, False]
    """
    letters_only = values.str.replace(NAME_SEPARATORS, "", regex=True)
    starts_with_letter = values.str.slice(0, 1).str.isalpha()
    return (letters_only.str.isalpha() & starts_with_letter).fillna(False).astype(bool)


def has_date_format(values: pd.Series) -> pd.Series:
    return values.str.fullmatch(DATE_PATTERN).fillna(False).astype(bool)


def parse_dates(values: pd.Series) -> pd.Series:
    """YYYY-MM-DD to datetime64; anything else (03/04/1971, 2023-02-30) becomes NaT."""
    shaped = values.where(has_date_format(values), None)
    return pd.to_datetime(shaped, format="%Y-%m-%d", errors="coerce")


def date_bounds(today: dt.date | None = None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(oldest accepted date of birth, newest accepted date of birth)."""
    today = today or clock.today()
    try:
        oldest = today.replace(year=today.year - MAX_AGE_YEARS)
    except ValueError:  # 29 February
        oldest = today.replace(year=today.year - MAX_AGE_YEARS, day=28)
    return pd.Timestamp(oldest), pd.Timestamp(today)
