"""Mobile phone normalisation to E.164 with `phonenumbers`, vectorised for million-row rosters.

`phonenumbers` costs ~50 µs a number, a minute per million rows. The fast path applies the same
library's metadata (the region's number patterns) to whole arrays with pyarrow's regex engine;
any value it cannot vouch for goes to `phonenumbers` itself, so the answer is always the
library's. `tests/domain/test_phone.py` checks the two agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberType

if TYPE_CHECKING:  # imported where a Series is built: `to_e164` and `phone_value` need no pandas
    import pandas as pd

MOBILE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
# Formatting people type between digits: spaces, dashes, dots, brackets, slashes.
# Spelled out (no \s or \u escapes): pandas then hands the pattern to pyarrow instead of
# running Python's re value by value (~30% faster on a million phones).
SEPARATORS = "[ \t\n\r\f\v\u00a0./()-]"
# Types phonenumbers checks before fixed line/mobile: a match means "not a mobile number".
_NON_MOBILE_DESCS = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
)


def to_e164(raw: str, region: str) -> str | None:
    """The reference: E.164 when `raw` can be a valid mobile number, else None.

    >>> to_e164("(212) 555-0102", "US") == to_e164("+1 212 555 0102", "US") == "+12125550102"
    True
    >>> to_e164("800-555-0100", "US") is None  # toll free: valid, but not a mobile
    True
    """
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    if phonenumbers.number_type(number) not in MOBILE_TYPES:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=16384)  # a feed resends the same patients: each number is parsed once
def phone_value(raw: str, region: str) -> str:
    """`normalise_phones` for one value: E.164, or "" when empty or not a valid mobile.

    >>> phone_value(" 415.555.2671 ", "US"), phone_value("12", "US")
    ('+14155552671', '')
    """
    text = raw.strip()
    if not text:
        return ""
    return _fast_e164(text, region) or to_e164(text, region) or ""


_SEPARATOR = re.compile(SEPARATORS)
_DIGITS = re.compile("[0-9]+")


# (country code, possible lengths, general pattern, mobile pattern, non-mobile patterns)
_Compiled = tuple[
    str, tuple[int, ...], re.Pattern[str], re.Pattern[str], tuple[re.Pattern[str], ...]
]


@cache
def _compiled(region: str) -> _Compiled | None:
    """`_patterns` compiled by Python's `re`, for one value at a time."""
    patterns = _patterns(region)
    if patterns is None:
        return None
    return (
        patterns.country_code,
        patterns.lengths,
        re.compile(patterns.general),
        re.compile(patterns.mobile),
        tuple(re.compile(pattern) for pattern in patterns.excluded),
    )


def _fast_e164(text: str, region: str) -> str | None:
    """`normalise_phones`' fast path for one value: E.164 when the region's own metadata
    vouches for `text` as a mobile number in an unambiguous form, else None (then
    `phonenumbers` decides): ~20x less time than `to_e164` for a US number."""
    compiled = _compiled(region)
    if compiled is None:
        return None
    cc, lengths, general, mobile, excluded = compiled
    national = _SEPARATOR.sub("", text)
    if national.startswith("+" + cc):
        national = national[len(cc) + 1 :]
    if (
        len(national) not in lengths
        or not _DIGITS.fullmatch(national)
        or not general.fullmatch(national)
        or not mobile.fullmatch(national)
        or any(pattern.fullmatch(national) for pattern in excluded)
    ):
        return None
    return f"+{cc}{national}"


@dataclass(frozen=True)
class _RegionPatterns:
    country_code: str
    lengths: tuple[int, ...]
    general: str
    mobile: str
    fixed_line: str | None
    excluded: tuple[str, ...]


@cache
def _patterns(region: str) -> _RegionPatterns | None:
    meta = PhoneMetadata.metadata_for_region(region.upper())
    if meta is None or meta.mobile is None or meta.mobile.national_number_pattern is None:
        return None
    general = meta.general_desc
    if general is None or general.national_number_pattern is None:
        return None
    lengths = tuple(meta.mobile.possible_length or general.possible_length or ())
    fixed = meta.fixed_line.national_number_pattern if meta.fixed_line else None
    excluded = tuple(
        desc.national_number_pattern
        for name in _NON_MOBILE_DESCS
        if (desc := getattr(meta, name)) is not None and desc.national_number_pattern
    )
    return _RegionPatterns(
        country_code=str(meta.country_code),
        lengths=lengths,
        general=general.national_number_pattern,
        mobile=meta.mobile.national_number_pattern,
        fixed_line=fixed,
        excluded=excluded,
    )


def normalise_phones(raw: pd.Series, region: str) -> tuple[pd.Series, pd.Series]:
    """Return (E.164 or "" per value, mask of non-empty values that are not a valid mobile).

    >>> import pandas as pd
    >>> e164, bad = normalise_phones(pd.Series(["", "415.555.2671", "12"]), "US")
    >>> e164.tolist(), bad.tolist()
    (['', '+14155552671', ''], [False, False, True])
    """
    text = raw.fillna("").astype("str").str.strip()
    present = text != ""
    import pandas as pd

    result = pd.Series("", index=raw.index, dtype="str")
    decided = ~present

    patterns = _patterns(region)
    if patterns is not None and present.any():
        digits = text.str.replace(SEPARATORS, "", regex=True)
        cc = patterns.country_code
        national = digits.where(~digits.str.startswith("+" + cc), digits.str.slice(len(cc) + 1))
        # A national number with the trunk prefix the region allows for its country code
        # (1 in NANP) is left to phonenumbers: the fast path takes only unambiguous forms.
        plain = national.str.fullmatch(r"[0-9]+").fillna(False) & present
        lengths_ok = national.str.len().isin(patterns.lengths)
        fast = plain & lengths_ok
        fast &= national.str.fullmatch(patterns.general).fillna(False)
        fast &= national.str.fullmatch(patterns.mobile).fillna(False)
        for pattern in patterns.excluded:
            fast &= ~national.str.fullmatch(pattern).fillna(False)
        fast = fast.astype(bool)
        result = result.mask(fast, "+" + cc + national)
        decided = decided | fast

    slow = ~decided
    if slow.any():
        # Only the values the fast path could not vouch for; duplicates are parsed once.
        unique = text[slow].unique()
        mapping = {value: to_e164(value, region) or "" for value in unique}
        result = result.mask(slow, text[slow].map(mapping))
    invalid = present & (result == "")
    return result.astype("str"), invalid.astype(bool)
