"""Row normalisation, one definition for every source (CSV roster, HL7 frame, registrations).

Vectorised over pandas Series (a roster chunk holds up to a million rows); `clean_value` and
`email_value` are the same rules for one value (a form field, an address on the command line),
and tests/domain/test_normalise.py checks that the two agree.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from openslots.domain.contact import clean_text, normalise_email, parse_dates
from openslots.domain.phone import normalise_phones

if TYPE_CHECKING:  # imported where a frame is built: the one-value forms need no pandas
    import pandas as pd

EMAIL_COLUMN = "email"
PHONE_COLUMN = "mobile_phone"


def clean_value(text: str | None) -> str:
    """`contact.clean_text` for one value: NFC, non-breaking spaces as spaces, trimmed.

    >>> clean_value(" Jose\\u0301\\u00a0")
    'José'
    """
    return unicodedata.normalize("NFC", text or "").replace("\u00a0", " ").strip()


def email_value(text: str | None) -> str:
    """`contact.normalise_email` for one address: cleaned and lower-cased.

    >>> email_value("  Ana.Ruiz@Example.ORG ")
    'ana.ruiz@example.org'
    """
    return clean_value(text).lower()


def normalise_rows(
    raw: pd.DataFrame,
    columns: Sequence[str],
    region: str,
    dates: Mapping[str, str],
) -> tuple[pd.DataFrame, pd.Series]:
    """Every column of `columns` cleaned (a missing one is empty), `email` lower-cased,
    `mobile_phone` as E.164 (empty when unusable), and each `dates` source column parsed into
    its target column (NaT when not a real YYYY-MM-DD date).

    Returns the frame and the mask of rows whose phone was present but not a valid mobile
    (a warning: the row stays, without a phone).

    >>> import pandas as pd
    >>> frame, bad = normalise_rows(
    ...     pd.DataFrame({"email": [" A@B.ORG "], "mobile_phone": ["12"]}),
    ...     ["email", "mobile_phone", "date_of_birth"], "US", {"date_of_birth": "dob"})
    >>> frame["email"].tolist(), frame["date_of_birth"].tolist(), bad.tolist()
    (['a@b.org'], [''], [True])
    """
    import pandas as pd

    frame = pd.DataFrame(index=raw.index)
    for column in columns:
        clean = normalise_email if column == EMAIL_COLUMN else clean_text
        frame[column] = clean(raw[column]) if column in raw else ""
    frame[PHONE_COLUMN], bad_phone = normalise_phones(frame[PHONE_COLUMN], region)
    for source, target in dates.items():
        frame[target] = parse_dates(frame[source])
    return frame, bad_phone
