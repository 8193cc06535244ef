"""Normalisation and checks of roster values (names, emails, dates of birth).

The Series functions handle a chunk of a million rows with array operations; the patterns are
plain enough for both Python's `re` and pyarrow's RE2. Each check also has a one-value form
(`valid_email`, `valid_name`, ...) built from the same pattern, for the few rows of an MLLP
group where pandas' fixed cost per call would dominate; tests/domain/test_contact.py checks
that the two forms agree on any text.

pandas is imported by the three functions that build pandas objects, not by the module: the
models import `name_key` from here, and a command that only reads the database must not pay
for pandas (~0.5 s).
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
import unicodedata
from typing import TYPE_CHECKING

from openslots.domain import clock

if TYPE_CHECKING:
    import pandas as pd

# Local part per RFC 5322 "atext" plus dots; a domain of at least two labels.
EMAIL_PATTERN = (
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}"
)
# ASCII digits only: Python's \d takes any script's, which pandas then reads in a year only.
DATE_PATTERN = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
NAME_SEPARATORS = r"['’\- .,]"  # inside a name only: it must start with a letter
CONTROL_CHARACTERS = r"[\x00-\x1f\x7f]"
MAX_AGE_YEARS = 130
UNKNOWN_DOB = "1970-01-01"  # the seed's recommended placeholder; a valid date like any other

_EMAIL = re.compile(EMAIL_PATTERN)
_DATE = re.compile(DATE_PATTERN)
_NAME_SEPARATORS = re.compile(NAME_SEPARATORS)
_CONTROL = re.compile(CONTROL_CHARACTERS)


def clean_text(values: pd.Series) -> pd.Series:
    """NFC-normalise (macOS exports decompose accents) and trim white space, including the
    non-breaking spaces Excel likes to leave."""
    text = _nfc(values.fillna("").astype("str"))
    return text.str.replace("\u00a0", " ", regex=False).str.strip()


def _nfc(text: pd.Series) -> pd.Series:
    """`str.normalize("NFC")` of the values that need it: ASCII text is NFC already, and
    pandas normalises one value at a time in Python (pyarrow's utf8_normalize does not
    compose), which made NFC most of a roster's validation time."""
    import pandas as pd

    ascii_text = text.str.isascii().fillna(True).astype(bool)
    if ascii_text.all():
        return text
    other = text[~ascii_text]
    composed = [unicodedata.normalize("NFC", value) for value in other.tolist()]
    return text.mask(~ascii_text, pd.Series(composed, index=other.index, dtype=text.dtype))


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


def valid_email(text: str) -> bool:
    """`is_valid_email` for one value."""
    return _EMAIL.fullmatch(text) is not None


def valid_name(text: str) -> bool:
    """`is_valid_name` for one value.

    >>> valid_name("King, Jr."), valid_name("R2D2")
    (True, False)
    """
    letters_only = _NAME_SEPARATORS.sub("", text)
    return text[:1].isalpha() and (letters_only.isalpha() or _letters_and_marks(letters_only))


def feed_name(text: str) -> bool:
    """`is_feed_name` for one value."""
    if text.isalpha():  # the usual name: letters only, so no control character either
        return True
    return any(ch.isalpha() for ch in text) and not has_control(text)


def has_control(text: str) -> bool:
    """Whether one value holds a control character (CONTROL_CHARACTERS)."""
    return _CONTROL.search(text) is not None


def date_format(text: str) -> bool:
    """`has_date_format` for one value."""
    return _DATE.fullmatch(text) is not None


def parse_date(text: str) -> tuple[int, int, int] | None:
    """`parse_dates` for one value, as (year, month, day) or None.

    A tuple, not a `datetime.date`: pandas reads the proleptic calendar from year 0
    ("0000-02-29" is a date to it, too old rather than unreal), which `date` cannot hold.

    >>> parse_date("2000-02-29"), parse_date("2023-02-30"), parse_date("03/04/1971")
    ((2000, 2, 29), None, None)
    """
    if not date_format(text):
        return None
    year, month, day = int(text[:4]), int(text[5:7]), int(text[8:10])
    if not 1 <= month <= 12:
        return None
    leap = calendar.isleap(year)  # year 0 is a leap year, as in pandas
    days = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month - 1]
    return (year, month, day) if 1 <= day <= days else None


def is_valid_name(values: pd.Series) -> pd.Series:
    """The CSV rule (`name_characters`): letters of any script and their combining marks,
    apostrophes (' and ’), hyphens, spaces, and commas and periods for suffixes; starts with a
    letter. A CSV row is typed by hand, so anything else (digits, `<`, `>`, `@`, control
    characters) is a typing error.

    >>> import pandas as pd
    >>> is_valid_name(pd.Series(["King, Jr.", "O’Neil", "St. John-Smith", "R2D2", ",x"])).tolist()
    [True, True, True, False, False]
    """
    letters_only = values.str.replace(NAME_SEPARATORS, "", regex=True)
    starts_with_letter = values.str.slice(0, 1).str.isalpha()
    valid = (letters_only.str.isalpha() & starts_with_letter).fillna(False).astype(bool)
    # Outside ASCII, Python's Unicode tables decide, through `valid_name`: pyarrow's are of
    # another Unicode version, and combining marks (Devanagari vowel signs, a stray accent NFC
    # could not compose) are not "alpha". Those names are few; they go one by one.
    other = ~values.str.isascii().fillna(True).astype(bool)
    if other.any():
        valid[other] = [valid_name(text) for text in values[other]]
    return valid


def is_feed_name(values: pd.Series) -> pd.Series:
    """The EHR feed rule: at least one letter and no control character. A feed is the source
    of truth for its patients; what `is_valid_name` would refuse there is a warning.

    >>> import pandas as pd
    >>> is_feed_name(pd.Series(["TEST1", "NOPV1PATIENT", "123", "Ann\\x07"])).tolist()
    [True, True, False, False]
    """
    has_letter = [any(ch.isalpha() for ch in text) for text in values.fillna("")]
    control = values.str.contains(CONTROL_CHARACTERS, regex=True).fillna(False).astype(bool)
    import pandas as pd

    return pd.Series(has_letter, index=values.index, dtype=bool) & ~control


def _letters_and_marks(text: str) -> bool:
    return bool(text) and all(
        ch.isalpha() or unicodedata.category(ch).startswith("M") for ch in text
    )


def has_date_format(values: pd.Series) -> pd.Series:
    return values.str.fullmatch(DATE_PATTERN).fillna(False).astype(bool)


def parse_dates(values: pd.Series) -> pd.Series:
    """YYYY-MM-DD to datetime64; anything else (03/04/1971, 2023-02-30) becomes NaT."""
    shaped = values.where(has_date_format(values), None)
    import pandas as pd

    return pd.to_datetime(shaped, format="%Y-%m-%d", errors="coerce")


def date_bounds(today: dt.date | None = None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(oldest accepted date of birth, newest accepted date of birth)."""
    today = today or clock.today()
    try:
        oldest = today.replace(year=today.year - MAX_AGE_YEARS)
    except ValueError:  # 29 February
        oldest = today.replace(year=today.year - MAX_AGE_YEARS, day=28)
    import pandas as pd

    return pd.Timestamp(oldest), pd.Timestamp(today)
