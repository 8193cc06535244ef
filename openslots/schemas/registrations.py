"""Mobile registrations as the app's backend reports them: columns, pandera model, validation."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors
from pandera.typing import Series

from openslots.domain import contact
from openslots.domain.availability import AvailabilityError, parse_windows
from openslots.domain.normalise import normalise_rows
from openslots.schemas.roster import Rejection, rejections_from, split_accepted

REGISTRATION_COLUMNS = (
    "email",
    "date_of_birth",
    "first_name",
    "last_name",
    "mobile_phone",
    "provider",
    "location",
    "dependent_first_name",
    "dependent_last_name",
    "dependent_date_of_birth",
    "availability",
)
REQUIRED = ("email", "date_of_birth", "first_name", "last_name")
EXTRA_MESSAGES = {
    "provider_and_location": "provider and location go together: name both or neither",
    "dependent_fields_together": "a dependent needs dependent_first_name, dependent_last_name "
    "and dependent_date_of_birth",
    "availability_format": "expected `DAYS HH:MM-HH:MM; ...` (e.g. `Mon-Fri 08:00-12:00; Sat "
    "09:00-11:00`) or `any`",
}


class RegistrationRow(pa.DataFrameModel):
    """A normalised registration chunk; `dob` / `dependent_dob` are the parsed dates."""

    email: Series[str]
    date_of_birth: Series[str]
    first_name: Series[str]
    last_name: Series[str]
    mobile_phone: Series[str]
    provider: Series[str]
    location: Series[str]
    dependent_first_name: Series[str]
    dependent_last_name: Series[str]
    dependent_date_of_birth: Series[str]
    availability: Series[str]
    dob: Series[pd.Timestamp] = pa.Field(nullable=True)
    dependent_dob: Series[pd.Timestamp] = pa.Field(nullable=True)

    class Config:
        strict = False
        coerce = False

    @pa.check(*REQUIRED, name="required")
    @classmethod
    def required(cls, values: pd.Series) -> pd.Series:
        return values != ""

    @pa.check("email", name="email_format")
    @classmethod
    def email_format(cls, values: pd.Series) -> pd.Series:
        return (values == "") | contact.is_valid_email(values)

    @pa.check(
        "first_name",
        "last_name",
        "dependent_first_name",
        "dependent_last_name",
        name="name_characters",
    )
    @classmethod
    def name_characters(cls, values: pd.Series) -> pd.Series:
        return (values == "") | contact.is_valid_name(values)

    @pa.check("availability", name="availability_format")
    @classmethod
    def availability_format(cls, values: pd.Series) -> pd.Series:
        return values.map(_windows_error).isna()

    @pa.check("date_of_birth", "dependent_date_of_birth", name="date_format")
    @classmethod
    def date_format(cls, values: pd.Series) -> pd.Series:
        return (values == "") | contact.has_date_format(values)

    @pa.check("dob", "dependent_dob", name="not_in_future")
    @classmethod
    def not_in_future(cls, dob: pd.Series) -> pd.Series:
        return dob.isna() | (dob <= contact.date_bounds()[1])

    @pa.check("dob", "dependent_dob", name="not_over_130_years")
    @classmethod
    def not_over_130_years(cls, dob: pd.Series) -> pd.Series:
        return dob.isna() | (dob >= contact.date_bounds()[0])

    @pa.dataframe_check(name="real_date")
    @classmethod
    def real_date(cls, frame: pd.DataFrame) -> pd.Series:
        return ~contact.has_date_format(frame["date_of_birth"]) | frame["dob"].notna()

    @pa.dataframe_check(name="provider_and_location")
    @classmethod
    def provider_and_location(cls, frame: pd.DataFrame) -> pd.Series:
        return (frame["provider"] == "") == (frame["location"] == "")

    @pa.dataframe_check(name="dependent_fields_together")
    @classmethod
    def dependent_fields_together(cls, frame: pd.DataFrame) -> pd.Series:
        given = (
            (frame["dependent_first_name"] != "").astype(int)
            + (frame["dependent_last_name"] != "").astype(int)
            + (frame["dependent_date_of_birth"] != "").astype(int)
        )
        return given.isin([0, 3])


_FRAME_FIELDS = {
    "real_date": "date_of_birth",
    "provider_and_location": "location",
    "dependent_fields_together": "dependent_date_of_birth",
}
_DERIVED = {"dob": "date_of_birth", "dependent_dob": "dependent_date_of_birth"}
_DATES = {source: parsed for parsed, source in _DERIVED.items()}


def _windows_error(text: str) -> str | None:
    """What is wrong with an availability text (its error names the part), None when valid."""
    try:
        parse_windows(text)
    except AvailabilityError as exc:
        return str(exc)
    return None


@dataclass
class RegistrationChunk:
    accepted: pd.DataFrame
    rejections: list[Rejection]
    warnings: list[Rejection]


def validate_registrations(raw: pd.DataFrame, first_line: int, region: str) -> RegistrationChunk:
    """Normalise and validate registrations; `first_line` numbers rows (CSV header = line 1)."""
    raw = raw.fillna("")
    lines = pd.Series(range(first_line, first_line + len(raw)), index=raw.index)
    frame, bad_phone = normalise_rows(raw, REGISTRATION_COLUMNS, region, _DATES)
    rejections: list[Rejection] = []
    try:
        RegistrationRow.validate(frame, lazy=True)
    except SchemaErrors as errors:
        rejections = rejections_from(
            errors.failure_cases, lines, _FRAME_FIELDS, _DERIVED, EXTRA_MESSAGES
        )
    # A malformed window is named: the part that is wrong (a day, a time) is no patient data.
    rows = dict(zip(lines, frame.index, strict=True))
    rejections = [
        replace(r, message=_windows_error(frame.at[rows[r.line], "availability"]) or r.message)
        if r.rule == "availability_format"
        else r
        for r in rejections
    ]
    accepted, warnings = split_accepted(frame, lines, rejections, bad_phone, region)
    return RegistrationChunk(accepted, sorted(rejections, key=lambda r: r.line), warnings)
