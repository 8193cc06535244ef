"""Registrations are normalised by the same definition as the roster: the same typed values
come out the same, so a Date of Birth Match compares like with like."""

from __future__ import annotations

import pandas as pd

from openslots.schemas.registrations import REGISTRATION_COLUMNS, validate_registrations
from openslots.schemas.roster import ROSTER_COLUMNS, validate_chunk

TYPED = {
    "first_name": " Zoe\u0308 ",  # decomposed ë
    "last_name": "O'Brien\u00a0",
    "email": "  Zoe.OBrien@Example.ORG",
    "mobile_phone": "415.555.2671",
    "date_of_birth": "1985-03-04",
}


def test_registration_and_roster_rows_normalise_alike() -> None:
    roster = pd.DataFrame(
        [{c: TYPED.get(c, "7" if c == "client_id" else "") for c in ROSTER_COLUMNS}], dtype="str"
    )
    registration = pd.DataFrame([{c: TYPED.get(c, "") for c in REGISTRATION_COLUMNS}], dtype="str")
    from_roster = validate_chunk(roster, 2, "US").accepted
    from_app = validate_registrations(registration, 2, "US").accepted
    for column in TYPED:
        assert from_roster[column].tolist() == from_app[column].tolist(), column
    assert from_app["email"].tolist() == ["zoe.obrien@example.org"]
    assert from_app["first_name"].tolist() == ["Zoë"]
    assert from_app["last_name"].tolist() == ["O'Brien"]
    assert from_app["mobile_phone"].tolist() == ["+14155552671"]
    assert from_roster["dob"].tolist() == from_app["dob"].tolist() == [pd.Timestamp("1985-03-04")]
