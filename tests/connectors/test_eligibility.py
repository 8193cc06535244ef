"""Who may receive an Alert: the pure rule and the database query agree on any connection set,
per provider and location (a connection at the provider's other location is never alerted)."""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, insert

from openslots.connectors.database.eligibility import alert_reasons, eligible_connection_ids
from openslots.connectors.database.models import Connection as ConnectionRow
from openslots.connectors.database.models import Location, OptOut, Provider
from openslots.domain.eligibility import AlertReason, alert_reason, eligible_for_alerts
from openslots.domain.statuses import ConnectionStatus

EMAILS = ["a@example.org", "b@example.org", "c@example.org"]
PHONES = [None, "+14155550001", "+14155550002"]

connection_sets = st.lists(
    st.tuples(
        st.sampled_from([0, 1]),  # provider: 0 plain, 1 EHR-integrated
        st.sampled_from([0, 1]),  # which of the provider's two locations
        st.sampled_from(list(ConnectionStatus)),
        st.sampled_from([None, "", "  ", "MRN-1"]),
        st.sampled_from(EMAILS),
        st.sampled_from(PHONES),
    ),
    max_size=12,
)
opt_out_sets = st.lists(
    st.tuples(
        st.sampled_from([0, 1]),
        st.sampled_from(["email", "sms"]),
        st.sampled_from(EMAILS + [p for p in PHONES if p]),
    ),
    max_size=4,
    unique=True,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(connections=connection_sets, opt_outs=opt_out_sets)
def test_query_and_pure_rule_agree(db: Engine, connections, opt_outs) -> None:
    with db.begin() as conn:
        for table in (ConnectionRow, OptOut, Location, Provider):
            conn.execute(delete(table))
        providers = [
            conn.execute(
                insert(Provider).values(name=f"P{i}", integrated=bool(i)).returning(Provider.id)
            ).scalar_one()
            for i in (0, 1)
        ]
        locations = [
            [
                conn.execute(
                    insert(Location).values(provider_id=p, name=f"L{n}").returning(Location.id)
                ).scalar_one()
                for n in (0, 1)
            ]
            for p in providers
        ]
        for provider, channel, address in opt_outs:
            conn.execute(
                insert(OptOut).values(
                    provider_id=providers[provider], channel=channel, address=address
                )
            )
        expected = set()
        facts = {}  # id -> (provider, location, status, mrn, opted out)
        for provider, location, status, mrn, email, phone in connections:
            cid = conn.execute(
                insert(ConnectionRow)
                .values(
                    provider_id=providers[provider],
                    location_id=locations[provider][location],
                    first_name="T",
                    last_name="T",
                    date_of_birth=dt.date(1990, 1, 1),
                    email=email,
                    mobile_phone=phone,
                    status=status,
                    mrn=mrn,
                )
                .returning(ConnectionRow.id)
            ).scalar_one()
            opted_out = (provider, "email", email) in opt_outs or (
                phone is not None and (provider, "sms", phone) in opt_outs
            )
            if eligible_for_alerts(
                status,
                integrated=bool(provider),
                has_mrn=bool(mrn and mrn.strip()),
                opted_out=opted_out,
            ):
                expected.add(cid)
            facts[cid] = (provider, location, status, mrn, opted_out)
    with db.connect() as conn:
        assert eligible_connection_ids(conn) == expected
        for provider, location in [(p, n) for p in (0, 1) for n in (0, 1)]:
            reasons = {
                cid: alert_reason(
                    status,
                    integrated=bool(provider),
                    has_mrn=bool(mrn and mrn.strip()),
                    opted_out=opted_out,
                    at_location=at == location,
                )
                for cid, (p, at, status, mrn, opted_out) in facts.items()
                if p == provider
            }
            ids = (providers[provider], locations[provider][location])
            assert eligible_connection_ids(conn, *ids) == {
                cid for cid, reason in reasons.items() if reason is AlertReason.ELIGIBLE
            }
            assert alert_reasons(conn, *ids) == reasons


# --- what a slot adds: availability windows and the contact cap -----------------------------

OPENED = dt.datetime(2026, 3, 9, 14, 0, tzinfo=dt.UTC)  # Monday 10:00 in New York (EDT)
WINDOWS = [None, "Mon-Fri 08:00-12:00", "Mon 10:00-10:30", "Sat 09:00-11:00", "Mon-Fry x"]
AGES = [dt.timedelta(days=d) for d in (0.5, 6.9, 7, 8)]  # sent this long before the slot opened

slot_connections = st.lists(
    st.tuples(
        st.sampled_from([0, 1]),  # location
        st.sampled_from([ConnectionStatus.APPROVED, ConnectionStatus.PAUSED]),
        st.sampled_from(WINDOWS),
        st.lists(st.sampled_from(range(len(AGES))), max_size=4),  # earlier offers sent
    ),
    max_size=10,
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    connections=slot_connections,
    cap=st.sampled_from([0, 1, 2, 3]),
    minutes=st.sampled_from([30, 120]),
    start=st.sampled_from(
        [OPENED + dt.timedelta(hours=h) for h in (0, 1.5, 24 * 5, 24 * 6 - 4.5)]
    ),  # New York: Mon 10:00, Mon 11:30, Sat 10:00, Sun 05:30
)
def test_slot_rule_and_query_agree(db: Engine, connections, cap, minutes, start) -> None:
    from openslots.connectors.database.eligibility import SlotFacts, slot_candidates
    from openslots.connectors.database.models import Offer, Slot
    from openslots.domain.availability import text_fits

    with db.begin() as conn:
        for table in (Offer, Slot, ConnectionRow, OptOut, Location, Provider):
            conn.execute(delete(table))
        provider = conn.execute(
            insert(Provider).values(name="P", integrated=False).returning(Provider.id)
        ).scalar_one()
        locations = [
            conn.execute(
                insert(Location)
                .values(provider_id=provider, name=f"L{n}", timezone="America/New_York")
                .returning(Location.id)
            ).scalar_one()
            for n in (0, 1)
        ]

        def slot(key: str) -> int:
            return conn.execute(
                insert(Slot)
                .values(
                    slot_key=key,
                    provider_id=provider,
                    location_id=locations[0],
                    filler_id="",
                    start="x",
                    starts_at=start,
                    duration_minutes=minutes,
                    status="open",
                    opened_at=OPENED,
                )
                .returning(Slot.id)
            ).scalar_one()

        this = slot("this")
        earlier = [slot(f"earlier{i}") for i in range(len(AGES))]
        expected = {}
        for location, status, windows, ages in connections:
            cid = conn.execute(
                insert(ConnectionRow)
                .values(
                    provider_id=provider,
                    location_id=locations[location],
                    first_name="T",
                    last_name="T",
                    date_of_birth=dt.date(1990, 1, 1),
                    email="a@example.org",
                    status=status,
                    availability=windows,
                )
                .returning(ConnectionRow.id)
            ).scalar_one()
            for age in set(ages):
                conn.execute(
                    insert(Offer).values(
                        slot_id=earlier[age],
                        connection_id=cid,
                        due_at=OPENED,
                        state="sent",
                        sent_at=OPENED - AGES[age],
                    )
                )
            # An offer of this very slot never counts against it.
            conn.execute(
                insert(Offer).values(
                    slot_id=this, connection_id=cid, due_at=OPENED, state="sent", sent_at=OPENED
                )
            )
            expected[cid] = alert_reason(
                status,
                integrated=False,
                has_mrn=False,
                opted_out=False,
                at_location=location == 0,
                fits_availability=text_fits(windows, start, minutes, "America/New_York"),
                recent_offers=sum(1 for a in set(ages) if AGES[a] < dt.timedelta(days=7)),
                max_per_week=cap,
            )
    facts = SlotFacts(this, start, minutes, "America/New_York", OPENED, cap)
    with db.connect() as conn:
        assert alert_reasons(conn, provider, locations[0], facts) == expected
        got = {c.connection_id for c in slot_candidates(conn, provider, locations[0], facts)}
        assert got == {cid for cid, r in expected.items() if r is AlertReason.ELIGIBLE}
