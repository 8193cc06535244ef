"""Mobile phone normalisation to E.164 with `phonenumbers`, vectorised for million-row rosters.

`phonenumbers` costs ~50 µs a number, a minute per million rows. The fast path applies the same
library's metadata (the region's number patterns) to whole arrays with pyarrow's regex engine;
any value it cannot vouch for goes to `phonenumbers` itself, so the answer is always the
library's. `tests/domain/test_phone.py` checks the two agree.
"""

from __future__ import annotations

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
    return (to_e164(text, region) or "") if text else ""


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
