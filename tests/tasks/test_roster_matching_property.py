"""The real roster import and the pure matching rule agree: on any small provider state and
roster file, the rows rejected as already Approved, the rows sent to review and the rows
invited are the ones `decide_rows` names (both databases)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select

from openslots.connectors.database.connections import add_connection
from openslots.connectors.database.models import Base, Client, ImportRejection, Invitation
from openslots.connectors.database.models import Connection as ConnectionRow
from openslots.connectors.database.roster import ensure_target
from openslots.domain.contact import name_key
from openslots.domain.normalise import clean_value
from openslots.domain.roster_matching import KnownConnection, RosterRow, decide_rows
from openslots.domain.statuses import ConnectionStatus
from tests.factories import roster_file
from tests.tasks.test_roster_import import LOCATION, PROVIDER, run_import

# Small pools, so that rows and connections collide in every tier, and rows with each other.
REFS = ["R1", "R2", "R3", "R4"]
DOBS = ["1980-01-01", "1990-05-05"]
LASTS = ["Lee", "Kim"]

STATUSES = [ConnectionStatus.APPROVED, *ConnectionStatus]  # Approved twice as often
EMAILS = ["a@example.org", "b@example.org", "c@example.org"]

Row = tuple[str, str, str, str, str]  # Client ID, email, date of birth, first, last name


@st.composite
def provider_and_roster(draw: st.DrawFn) -> tuple[list[tuple[object, ...]], list[Row]]:
    """A few connections, and a roster whose rows mostly copy one of them in one tier's fields
    (the MRN as Client ID, the email + birthday, or the name + birthday), so that every
    outcome is reached in a few examples; Client IDs and people may repeat (duplicates)."""
    connections = draw(
        st.lists(
            st.tuples(
                st.sampled_from(STATUSES),
                st.sampled_from([None, "R1", "R2", "X9"]),  # a row's Client ID, another, none
                st.sampled_from(EMAILS),
                st.sampled_from(DOBS),
                st.sampled_from(["Ann", "Bob"]),
                st.sampled_from(LASTS),
            ),
            max_size=5,
        )
    )
    rows = []
    for _ in range(draw(st.integers(1, 5))):
        ref = draw(st.sampled_from(REFS))
        email = draw(st.sampled_from([*EMAILS, "d@example.org"]))
        dob, last = draw(st.sampled_from(DOBS)), draw(st.sampled_from(LASTS))
        first = draw(st.sampled_from(["Ann", "ANN", "Bob"]))  # "ANN": Ann's name key
        if connections and draw(st.booleans()):
            _, mrn, c_email, c_dob, c_first, c_last = draw(st.sampled_from(connections))
            tier = draw(st.sampled_from([1, 2, 3]))
            if tier == 1 and mrn in REFS:
                ref = mrn
            elif tier == 2:
                email, dob = c_email.upper(), c_dob  # emails compare lower-cased
            else:
                dob, first, last = c_dob, c_first, c_last
        rows.append((ref, email, dob, first, last))
    return connections, rows


def kept_rows(rows: list[Row]) -> dict[int, Row]:
    """The in-file duplicate rule, restated: the first row of a Client ID, or of an email +
    date of birth + first name, is kept; a later one is rejected. By line (header is line 1)."""
    refs: set[str] = set()
    people: set[tuple[str, str, str]] = set()
    kept = {}
    for line, (ref, email, dob, first, last) in enumerate(rows, start=2):
        person = (email.lower(), dob, first.casefold())
        if ref in refs or person in people:
            continue
        refs.add(ref)
        people.add(person)
        kept[line] = (ref, email, dob, first, last)
    return kept


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(mode=st.sampled_from(["invite", "sync"]), state=provider_and_roster())
def test_import_and_pure_rule_agree(db: Engine, tmp_path: Path, mode: str, state) -> None:
    connections, rows = state
    with db.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))
        target = ensure_target(conn, PROVIDER, LOCATION, integrated=False, create=True)
        for status, mrn, email, dob, first, last in connections:
            add_connection(
                conn,
                provider_id=target.provider_id,
                location_id=target.location_id,
                first_name=first,
                last_name=last,
                date_of_birth=dt.date.fromisoformat(dob),
                email=email,
                status=status,
                mrn=mrn,
            )
        columns = (ConnectionRow.id, ConnectionRow.status, ConnectionRow.mrn, ConnectionRow.email)
        known = [
            KnownConnection(*row)
            for row in conn.execute(
                select(*columns, ConnectionRow.date_of_birth, ConnectionRow.name_key)
            )
        ]
    path = roster_file(
        tmp_path / "roster.csv",
        [[ref, first, last, dob, email, ""] for ref, email, dob, first, last in rows],
    )
    summary = run_import(path, mode=mode)

    kept = kept_rows(rows)
    decisions = decide_rows(
        mode,
        [
            RosterRow(
                line,
                ref,
                email.lower(),
                dt.date.fromisoformat(dob),
                name_key(clean_value(first), clean_value(last)),
            )
            for line, (ref, email, dob, first, last) in kept.items()
        ],
        known,
    )
    with db.connect() as conn:
        findings = conn.execute(
            select(ImportRejection.line, ImportRejection.rule, ImportRejection.severity).where(
                ImportRejection.batch_id == summary.batch_id
            )
        ).all()
        invited = set(
            conn.execute(
                select(Client.client_ref).join(Invitation, Invitation.client_id == Client.id)
            ).scalars()
        )
    for decision in decisions.values():  # what the examples cover: --hypothesis-show-statistics
        event(f"{mode}: {decision.rejected or decision.state} {sorted(decision.reviews)}")
    errors = {(line, rule) for line, rule, severity in findings if severity == "error"}
    reviews = {(line, rule) for line, rule, severity in findings if severity == "review"}
    duplicates = {(line, rule) for line, rule in errors if rule.startswith("duplicate_")}
    assert {line for line, _ in duplicates} == set(range(2, len(rows) + 2)) - set(kept)
    assert errors - duplicates == {
        (line, d.rejected) for line, d in decisions.items() if d.rejected is not None
    }
    assert reviews == {(line, str(rule)) for line, d in decisions.items() for rule in d.reviews}
    assert invited == {kept[line][0] for line, d in decisions.items() if d.may_invite}
