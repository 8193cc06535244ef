"""HL7 errors: each names the segment, field and rule (HL7 ERR-style), never a value."""

from __future__ import annotations

from openslots.errors import OpenslotsError


class Hl7Error(OpenslotsError):
    """Base of HL7 problems. `location` is like "PID-7"; `code` is the HL7 table 0357 code."""

    code = "207"  # application internal error

    def __init__(self, message: str, location: str | None = None, rule: str | None = None):
        self.location, self.rule = location, rule
        where = f"{location} ({rule})" if location and rule else location
        super().__init__(f"{where}: {message}" if where else message)


class Hl7ParseError(Hl7Error):
    """The message cannot be read as HL7 at all (AR)."""

    code = "102"  # data type error / unreadable


class Hl7Warning(Hl7Error):
    """Not raised: a finding about a message that is still applied (AA with ERR severity W)."""

    code = "0"  # table 0357: message accepted


class Hl7ContentError(Hl7Error):
    """The message is HL7 but cannot be applied (AE): a required field is missing or invalid."""

    code = "101"  # required field missing
