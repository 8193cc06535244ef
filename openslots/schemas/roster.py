"""The bulk roster (the seed's CSV template): columns, the pandera model, and chunk validation.

`validate_chunk` normalises a chunk (trim, lower-case emails, E.164 phones, parsed dates),
validates it lazily with `RosterRow` and turns pandera's failure cases into `Rejection`s that
name the line, the field and the rule, never the rejected value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from functools import cache, lru_cache
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors
from pandera.typing import Series

from openslots.domain import clock, contact
from openslots.domain.normalise import clean_value, email_value, normalise_rows
from openslots.domain.phone import phone_value
from openslots.errors import RosterFileError

# Canonical column -> header spellings seen in practice (compared after `header_key`).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "client_id": ("clientid", "mrn", "patientid"),
    "first_name": ("firstname",),
    "last_name": ("lastname",),
    "date_of_birth": ("dateofbirth", "dob", "birthdate"),
    "email": ("email", "emailaddress"),
    "mobile_phone": ("mobilephone", "mobile", "mobilephonenumber", "phone", "cellphone"),
    "guardian_first_name": ("guardianfirstname",),
    "guardian_last_name": ("guardianlastname",),
}
REQUIRED_COLUMNS = ("client_id", "first_name", "last_name", "date_of_birth", "email")
OPTIONAL_COLUMNS = ("mobile_phone", "guardian_first_name", "guardian_last_name")
ROSTER_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
BLANK = "_blank"  # set by the CSV reader: every field of the row, known or not, is empty
EXTRA = "_extra_fields"  # set by the CSV reader: non-empty fields past the header
TEMPLATE_HEADER = (
    "Client ID,First Name,Last Name,Date of Birth,Email,Mobile Phone,"
    "Guardian First Name,Guardian Last Name"
)

RULE_MESSAGES: dict[str, str] = {
    "required": "{field} is required",
    "too_long": "{field} is longer than {limit} characters",
    "control_characters": "{field} contains control characters (tabs, line breaks or invisible "
    "codes)",
    "extra_fields": "the row has more fields than the header: a value probably contains the "
    "delimiter without quotes",
    "name_characters": "{field} may contain only letters, apostrophes, hyphens and spaces, "
    "and commas or periods after the first letter (King, Jr.); no digits, <, > or @",
    "name_letter": "{field} must contain at least one letter",
    "date_format": "{field} must be written YYYY-MM-DD (use 1970-01-01 when unknown); "
    "day/month orders such as MM/DD/YYYY are ambiguous and are not guessed",
    "real_date": "{field} is not a real calendar date",
    "not_in_future": "{field} is in the future",
    "not_over_130_years": "{field} is more than 130 years ago",
    "email_format": "email must be a valid address such as name@example.org",
    "guardian_names_together": "a dependent's row needs both guardian_first_name and "
    "guardian_last_name",
    "mobile_number": "mobile_phone cannot be a valid mobile number for region {region}; the row "
    "is accepted without a phone (email invitation only)",
    "duplicate_client_id": "duplicates the client_id of line {other_line}; the first row is kept",
    "duplicate_person": "duplicates line {other_line} (same email, date of birth and first "
    "name); the first row is kept",
    "approved_connection_exists": "the client already exists as an Approved Connection for "
    "this provider; remove the row, or use --mode sync to update it",
    "ambiguous_match": "matches connections of several clients; MRN not mapped, needs review",
    "mrn_conflict": "the matching connection already holds a different MRN; not changed, "
    "needs review",
    "shared_connection": "another row of this file matches the same connection; MRN not "
    "mapped, needs review",
}


@dataclass(frozen=True, slots=True)
class Rejection:
    """One finding about one row: `severity` is error (rejected), warning or review."""

    line: int
    field: str
    rule: str
    message: str
    severity: str = "error"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


CONTROL_CHARACTERS = contact.CONTROL_CHARACTERS
# Column widths of the database (openslots.connectors.database.models).
MAX_LENGTHS = {
    "client_id": 64,
    "first_name": 100,
    "last_name": 100,
    "guardian_first_name": 100,
    "guardian_last_name": 100,
    "email": 254,
}


def rule_message(rule: str, field: str, **extra: object) -> str:
    return RULE_MESSAGES[rule].format(field=field, limit=MAX_LENGTHS.get(field), **extra)


def header_key(name: str) -> str:
    """Header comparison key: only letters and digits count (case, spaces, NBSP, underscores,
    dashes, a BOM do not)."""
    return "".join(ch for ch in name.casefold() if ch.isalnum())


def map_header(header: list[str]) -> dict[str, str]:
    """File header -> canonical names for the columns we know; unknown columns are ignored."""
    lookup = {
        alias: canonical for canonical, aliases in COLUMN_ALIASES.items() for alias in aliases
    }
    mapping: dict[str, str] = {}
    for original in header:
        canonical = lookup.get(header_key(original))
        if canonical and canonical not in mapping.values():
            mapping[original] = canonical
    return mapping


class PatientRow(pa.DataFrameModel):
    """A normalised chunk of patients, from any source. `dob` is the parsed `date_of_birth`
    (NaT when unparseable). Email is optional here: it is needed to invite, not to know a
    patient (HL7 feeds mostly carry none)."""

    client_id: Series[str]
    first_name: Series[str]
    last_name: Series[str]
    date_of_birth: Series[str]
    email: Series[str]
    mobile_phone: Series[str]
    guardian_first_name: Series[str]
    guardian_last_name: Series[str]
    dob: Series[pd.Timestamp] = pa.Field(nullable=True)

    class Config:
        strict = False
        coerce = False

    @pa.check("client_id", "first_name", "last_name", "date_of_birth", name="required")
    @classmethod
    def required(cls, values: pd.Series) -> pd.Series:
        return values != ""

    @pa.check(
        "client_id",
        "first_name",
        "last_name",
        "email",
        "guardian_first_name",
        "guardian_last_name",
        name="control_characters",
    )
    @classmethod
    def control_characters(cls, values: pd.Series) -> pd.Series:
        return ~values.str.contains(CONTROL_CHARACTERS, regex=True).fillna(False).astype(bool)

    @pa.check("client_id", name="too_long")
    @classmethod
    def client_id_length(cls, values: pd.Series) -> pd.Series:
        return values.str.len() <= MAX_LENGTHS["client_id"]

    @pa.check(
        "first_name", "last_name", "guardian_first_name", "guardian_last_name", name="too_long"
    )
    @classmethod
    def name_length(cls, values: pd.Series) -> pd.Series:
        return values.str.len() <= MAX_LENGTHS["first_name"]

    @pa.check("email", name="too_long")
    @classmethod
    def email_length(cls, values: pd.Series) -> pd.Series:
        return values.str.len() <= MAX_LENGTHS["email"]

    @pa.check(
        "first_name",
        "last_name",
        "guardian_first_name",
        "guardian_last_name",
        name="name_characters",
    )
    @classmethod
    def name_characters(cls, values: pd.Series) -> pd.Series:
        return (values == "") | contact.is_valid_name(values)

    @pa.check("date_of_birth", name="date_format")
    @classmethod
    def date_format(cls, values: pd.Series) -> pd.Series:
        return (values == "") | contact.has_date_format(values)

    @pa.check("email", name="email_format")
    @classmethod
    def email_format(cls, values: pd.Series) -> pd.Series:
        return (values == "") | contact.is_valid_email(values)

    @pa.dataframe_check(name="real_date")
    @classmethod
    def real_date(cls, frame: pd.DataFrame) -> pd.Series:
        return ~contact.has_date_format(frame["date_of_birth"]) | frame["dob"].notna()

    @pa.check("dob", name="not_in_future")
    @classmethod
    def not_in_future(cls, dob: pd.Series) -> pd.Series:
        return dob.isna() | (dob <= contact.date_bounds()[1])

    @pa.check("dob", name="not_over_130_years")
    @classmethod
    def not_over_130_years(cls, dob: pd.Series) -> pd.Series:
        return dob.isna() | (dob >= contact.date_bounds()[0])

    @pa.dataframe_check(name="guardian_names_together")
    @classmethod
    def guardian_names_together(cls, frame: pd.DataFrame) -> pd.Series:
        return (frame["guardian_first_name"] == "") == (frame["guardian_last_name"] == "")


class RosterRow(PatientRow):
    """The seed's bulk roster: every row is an invitation to send, so the email is required."""

    @pa.check("email", name="required")
    @classmethod
    def email_required(cls, values: pd.Series) -> pd.Series:
        return values != ""


class FeedPatientRow(PatientRow):
    """A patient from an EHR feed, the source of truth for its patients: a name needs a letter
    (and no control character, like every name); what the CSV rule refuses is a warning."""

    @pa.check(
        "first_name",
        "last_name",
        "guardian_first_name",
        "guardian_last_name",
        name="name_letter",
    )
    @classmethod
    def name_characters(cls, values: pd.Series) -> pd.Series:
        return (values == "") | contact.is_feed_name(values)


NAME_COLUMNS = ("first_name", "last_name", "guardian_first_name", "guardian_last_name")


def name_warnings(frame: pd.DataFrame) -> list[tuple[Any, str]]:
    """(index, column) of every feed name the CSV rule `name_characters` would refuse."""
    found: list[tuple[Any, str]] = []
    for column in NAME_COLUMNS:
        values = frame[column]
        odd = (values != "") & ~contact.is_valid_name(values)
        found += [(index, column) for index in values.index[odd]]
    return found


def check_rows(model: type[PatientRow], frame: pd.DataFrame) -> list[tuple[Any, str, str]]:
    """(index, field, rule) of the first failed check per row and field, running the model's
    own checks without pandera's machinery: the same rules at a fraction of the cost for the
    handful of rows an MLLP group holds (`validate_chunk` stays the path for files)."""
    schema = _schema(model)
    found: dict[tuple[Any, str], str] = {}
    for column, spec in schema.columns.items():
        for check in spec.checks:
            passed = check._check_fn(frame[column])
            field = _REPORTED_FIELD.get(str(column), str(column))
            for index in frame.index[~passed.fillna(False).astype(bool)]:
                found.setdefault((index, field), _rule(check.name))
    for check in schema.checks:
        passed = check._check_fn(frame)
        field = _FRAME_CHECK_FIELD.get(str(check.name), "row")
        for index in frame.index[~passed.fillna(False).astype(bool)]:
            found.setdefault((index, field), _rule(check.name))
    return [(index, field, rule) for (index, field), rule in found.items()]


# (oldest, newest) accepted date of birth as (year, month, day).
DobBounds = tuple[tuple[int, int, int], tuple[int, int, int]]


@lru_cache(maxsize=4)
def _dob_bounds(today: dt.date) -> DobBounds:
    """`contact.date_bounds` as the (year, month, day) of `contact.parse_date`."""
    oldest, newest = contact.date_bounds(today)
    return (oldest.year, oldest.month, oldest.day), (newest.year, newest.month, newest.day)


# The model's checks for one normalised row (`normalise_record`), by check name: a column
# check is given the row, its column and the birth date bounds of the rules' day (`_dob_bounds`,
# computed once per group by `check_row`'s caller, not once per row and rule), a dataframe-wide
# check the row, "" and the same bounds. These are the pandas checks above one value at a time
# (the per-value forms of domain/contact.py), for the few rows of an MLLP group; `check_row`
# runs them in the model's own order, and tests/schemas/test_roster.py checks on arbitrary rows
# that both decide alike.
RowRule = Callable[[Mapping[str, Any], str, DobBounds], bool]
ROW_RULES: dict[str, RowRule] = {
    "required": lambda row, column, _: row[column] != "",
    "control_characters": lambda row, column, _: not contact.has_control(row[column]),
    "too_long": lambda row, column, _: len(row[column]) <= MAX_LENGTHS[column],
    "name_characters": lambda row, column, _: row[column] == "" or contact.valid_name(row[column]),
    "name_letter": lambda row, column, _: row[column] == "" or contact.feed_name(row[column]),
    "date_format": lambda row, column, _: row[column] == "" or contact.date_format(row[column]),
    "email_format": lambda row, column, _: row[column] == "" or contact.valid_email(row[column]),
    "not_in_future": lambda row, column, bounds: row[column] is None or row[column] <= bounds[1],
    "not_over_130_years": lambda row, column, bounds: (
        row[column] is None or row[column] >= bounds[0]
    ),
    "real_date": lambda row, _, __: (
        not contact.date_format(row["date_of_birth"]) or row["dob"] is not None
    ),
    "guardian_names_together": lambda row, _, __: (
        (row["guardian_first_name"] == "") == (row["guardian_last_name"] == "")
    ),
}


def normalise_record(raw: Mapping[str, str], region: str) -> tuple[dict[str, Any], bool]:
    """`normalise_chunk` for one row: (the normalised row with its `dob` as (year, month, day)
    or None, whether its phone was present but unusable)."""
    row: dict[str, Any] = {
        column: (email_value if column == "email" else clean_value)(raw.get(column, ""))
        for column in ROSTER_COLUMNS
    }
    phone = row["mobile_phone"]
    row["mobile_phone"] = phone_value(phone, region) if phone else ""
    row["dob"] = contact.parse_date(row["date_of_birth"])
    return row, bool(phone.strip()) and row["mobile_phone"] == ""


@cache
def _row_plan(model: type[PatientRow]) -> tuple[tuple[str, str, str, RowRule], ...]:
    """(column, reported field, rule, check) in the order `check_rows` reports them. A model
    check without a one-row form fails here, at first use, rather than going unchecked."""
    schema = _schema(model)
    plan = [
        (str(column), _REPORTED_FIELD.get(str(column), str(column)), name, ROW_RULES[name])
        for column, spec in schema.columns.items()
        for name in (_rule(check.name) for check in spec.checks)
    ]
    plan += [
        ("", _FRAME_CHECK_FIELD.get(name, "row"), name, ROW_RULES[name])
        for name in (_rule(check.name) for check in schema.checks)
    ]
    return tuple(plan)


def check_row(
    model: type[PatientRow], row: Mapping[str, Any], today: dt.date | None = None
) -> list[tuple[str, str]]:
    """`check_rows` for one normalised row (`normalise_record`): (field, rule) of the first
    failed check per field, in the same order. `today` (default: the clock's) is the day the
    birth date rules count from: a caller checking a group reads the clock once for all."""
    bounds = _dob_bounds(clock.today() if today is None else today)
    found: dict[str, str] = {}
    for column, field, name, rule in _row_plan(model):
        if field not in found and not rule(row, column, bounds):
            found[field] = name
    return list(found.items())


_SCHEMAS: dict[type[PatientRow], Any] = {}


def _schema(model: type[PatientRow]) -> Any:
    if model not in _SCHEMAS:
        _SCHEMAS[model] = model.to_schema()
    return _SCHEMAS[model]


# pandera (0.35) names an inherited check after its method instead of its `name=` once a
# subclass's schema has been built (RosterRow, then FeedPatientRow): the rule each method is.
_METHOD_RULES = {
    "client_id_length": "too_long",
    "name_length": "too_long",
    "email_length": "too_long",
    "email_required": "required",
}


def _rule(check: object) -> str:
    name = str(check)
    return _METHOD_RULES.get(name, name)


# Where a failure on a derived column is reported, and dataframe-wide checks' field.
_REPORTED_FIELD = {"dob": "date_of_birth"}
_FRAME_CHECK_FIELD = {
    "real_date": "date_of_birth",
    "guardian_names_together": "guardian_last_name",
}


@dataclass
class ChunkResult:
    """Accepted rows (normalised, with a `line` column) and the findings of one chunk."""

    accepted: pd.DataFrame
    rejections: list[Rejection]
    warnings: list[Rejection]
    total_rows: int


def normalise_chunk(raw: pd.DataFrame, region: str) -> tuple[pd.DataFrame, pd.Series]:
    """Canonical, trimmed columns; lower-case email; E.164 phone; parsed `dob`.

    Returns the frame and the mask of rows whose phone was present but unusable.
    """
    return normalise_rows(raw, ROSTER_COLUMNS, region, {"date_of_birth": "dob"})


def validate_chunk(
    raw: pd.DataFrame,
    first_line: int,
    region: str,
    model: type[PatientRow] = RosterRow,
    lines: pd.Series | None = None,
) -> ChunkResult:
    """Validate one chunk whose first data row is spreadsheet line `first_line` (or whose rows
    are the `lines` given, aligned on the chunk's index, when some rows were left out).

    Blank rows (every field empty, as Excel leaves at the end of a sheet) are skipped and do
    not count as rows.
    """
    raw = raw.fillna("")
    if lines is None:
        lines = pd.Series(range(first_line, first_line + len(raw)), index=raw.index)
    if BLANK in raw:
        not_blank = ~raw[BLANK].astype(bool)
    else:
        not_blank = raw.astype("str").apply(lambda col: col.str.strip() != "").any(axis=1)
    raw, lines = raw[not_blank], lines[not_blank]
    frame, bad_phone = normalise_chunk(raw, region)

    rejections: list[Rejection] = []
    try:
        model.validate(frame, lazy=True)
    except SchemaErrors as errors:
        rejections = rejections_from(errors.failure_cases, lines)
    if EXTRA in raw:
        rejections += [
            Rejection(int(line), "row", "extra_fields", rule_message("extra_fields", "row"))
            for line in lines[raw[EXTRA].astype(bool)]
        ]

    accepted, warnings = split_accepted(frame, lines, rejections, bad_phone, region)
    return ChunkResult(accepted, sorted(rejections, key=_order), warnings, len(frame))


def _order(rejection: Rejection) -> tuple[int, int, str]:
    position = ROSTER_COLUMNS.index(rejection.field) if rejection.field in ROSTER_COLUMNS else -1
    return (rejection.line, position, rejection.rule)


def rejections_from(
    failure_cases: pd.DataFrame,
    lines: pd.Series,
    frame_fields: dict[str, str] | None = None,
    derived: dict[str, str] | None = None,
    messages: dict[str, str] | None = None,
) -> list[Rejection]:
    """(line, field, rule) per pandera failure; the failure_case column holds raw values (PHI)
    and is dropped first. `frame_fields` names the field a dataframe-wide check reports,
    `derived` maps computed columns (dob) to the field they come from."""
    frame_fields = _FRAME_CHECK_FIELD if frame_fields is None else frame_fields
    derived = _REPORTED_FIELD if derived is None else derived
    cases = failure_cases.drop(columns=["failure_case"])
    unplaced = cases[cases["index"].isna()]
    if len(unplaced):
        # A check that failed as a whole (it raised, or a column is missing or mistyped) says
        # nothing about rows: accepting the chunk would let every row through unchecked.
        raise RosterFileError(
            f"validation rule {unplaced['check'].iloc[0]!s} could not be applied to "
            f"column {unplaced['column'].iloc[0]!s}"
        )
    cases = cases.dropna(subset=["index"])
    found: dict[tuple[int, str], Rejection] = {}
    columns = ["schema_context", "column", "check", "index"]
    for context, column, check, index in cases[columns].itertuples(index=False):
        rule = _rule(check)
        if context == "DataFrameSchema":
            field = frame_fields.get(rule, "row")
        else:
            field = derived.get(str(column), str(column))
        line = int(lines.loc[index])
        message = (messages or {}).get(rule) or rule_message(rule, field)
        # One finding per line and field: `required` already explains an empty value.
        found.setdefault((line, field), Rejection(line, field, rule, message))
    return list(found.values())


def split_accepted(
    frame: pd.DataFrame,
    lines: pd.Series,
    rejections: list[Rejection],
    bad_phone: pd.Series,
    region: str,
) -> tuple[pd.DataFrame, list[Rejection]]:
    """(rows not rejected, with their `line`; phone warnings for those rows)."""
    keep = ~lines.isin({r.line for r in rejections})
    warnings = [
        Rejection(
            int(line),
            "mobile_phone",
            "mobile_number",
            rule_message("mobile_number", "mobile_phone", region=region),
            "warning",
        )
        for line in lines[bad_phone & keep]
    ]
    accepted = frame[keep].copy()
    accepted.insert(0, "line", lines[keep].astype("int64"))
    return accepted, warnings
