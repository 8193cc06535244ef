"""No sequence of operator commands makes eligible someone who must not receive an Alert.

A hypothesis state machine drives the real commands (status, priority, MRN, opt-out, opt-in)
against the database and keeps its own model of the seed's rule; after every step the
database's eligibility query must equal the model's, for all connections and for each
provider and location (where the reasons from `alert_reasons` must equal the model's too).
"""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine, delete

from openslots.connectors.database import lifecycle as life
from openslots.connectors.database import opt_outs
from openslots.connectors.database.connections import add_connection
from openslots.connectors.database.eligibility import alert_reasons, eligible_connection_ids
from openslots.connectors.database.models import Channel, Location, OptOut, Provider
from openslots.connectors.database.models import Connection as ConnectionRow
from openslots.connectors.database.roster import ensure_target
from openslots.domain.eligibility import AlertReason, alert_reason, eligible_for_alerts
from openslots.domain.statuses import ConnectionStatus

EMAILS = ["a@example.org", "b@example.org"]
PHONES = ["+14155550001", "+14155550002"]


def test_commands_never_break_the_alert_rule(db: Engine) -> None:
    class Commands(RuleBasedStateMachine):
        @initialize()
        def setup(self) -> None:
            with db.begin() as conn:
                for table in (ConnectionRow, OptOut, Location, Provider):
                    conn.execute(delete(table))
                self.people: dict[int, dict] = {}
                self.places: list[tuple[int, int]] = []
                for integrated in (False, True):
                    # Two locations: n=0, 1 at the first, n=2 (sharing n=0's email) at the second.
                    targets = [
                        ensure_target(
                            conn, f"P{integrated}", f"L{k}", integrated=integrated, create=True
                        )
                        for k in (0, 1)
                    ]
                    self.places += [(t.provider_id, t.location_id) for t in targets]
                    for n in range(3):
                        target = targets[n // 2]
                        cid = add_connection(
                            conn,
                            provider_id=target.provider_id,
                            location_id=target.location_id,
                            first_name="T",
                            last_name=f"N{n}",
                            date_of_birth=dt.date(1990, 1, 1 + n),
                            email=EMAILS[n % 2],
                            mobile_phone=PHONES[n % 2] if n < 2 else None,
                        )
                        self.people[cid] = {
                            "provider": target.provider_id,
                            "location": target.location_id,
                            "integrated": integrated,
                            "status": "Pending",
                            "mrn": None,
                            "email": EMAILS[n % 2],
                            "phone": PHONES[n % 2] if n < 2 else None,
                        }
            self.opted: set[tuple[int, str, str]] = set()

        def ids(self) -> list[int]:
            return sorted(self.people)

        @rule(data=st.data(), status=st.sampled_from(list(ConnectionStatus)))
        def set_status(self, data: st.DataObject, status: ConnectionStatus) -> None:
            cid = data.draw(st.sampled_from(self.ids()))
            with db.begin() as conn:
                life.set_connection_status(conn, cid, status, "fuzz")
            self.people[cid]["status"] = status.value

        @rule(data=st.data(), mrn=st.sampled_from(["", "  ", "M1", None]))
        def set_mrn(self, data: st.DataObject, mrn: str | None) -> None:
            cid = data.draw(st.sampled_from(self.ids()))
            with db.begin() as conn:
                life.set_mrn(conn, cid, mrn, "fuzz")
            self.people[cid]["mrn"] = (mrn or "").strip() or None

        @rule(data=st.data(), label=st.sampled_from(["High", "Low"]))
        def set_priority(self, data: st.DataObject, label: str) -> None:
            with db.begin() as conn:
                life.set_priority(
                    conn, data.draw(st.sampled_from(self.ids())), label, ["High", "Low"], "fuzz"
                )

        @rule(data=st.data(), opt_in=st.booleans(), by_phone=st.booleans())
        def opt(self, data: st.DataObject, opt_in: bool, by_phone: bool) -> None:
            person = self.people[data.draw(st.sampled_from(self.ids()))]
            channel = Channel.SMS if by_phone else Channel.EMAIL
            address = person["phone"] if by_phone else person["email"]
            if address is None:
                return
            key = (person["provider"], channel.value, address)
            with db.begin() as conn:
                if opt_in and key in self.opted:
                    opt_outs.opt_in(conn, person["provider"], channel, address, "fuzz")
                    self.opted.discard(key)
                elif not opt_in:
                    opt_outs.opt_out(conn, person["provider"], channel, address, "fuzz")
                    self.opted.add(key)

        @invariant()
        def query_equals_rule(self) -> None:
            expected = {
                cid
                for cid, p in self.people.items()
                if eligible_for_alerts(
                    ConnectionStatus(p["status"]),
                    integrated=p["integrated"],
                    has_mrn=p["mrn"] is not None,
                    opted_out=(p["provider"], "email", p["email"]) in self.opted
                    or (p["provider"], "sms", p["phone"]) in self.opted,
                )
            }
            with db.connect() as conn:
                assert eligible_connection_ids(conn) == expected
                for provider_id, location_id in self.places:
                    reasons = {
                        cid: alert_reason(
                            ConnectionStatus(p["status"]),
                            integrated=p["integrated"],
                            has_mrn=p["mrn"] is not None,
                            opted_out=(p["provider"], "email", p["email"]) in self.opted
                            or (p["provider"], "sms", p["phone"]) in self.opted,
                            at_location=p["location"] == location_id,
                        )
                        for cid, p in self.people.items()
                        if p["provider"] == provider_id
                    }
                    assert eligible_connection_ids(conn, provider_id, location_id) == {
                        cid for cid, reason in reasons.items() if reason is AlertReason.ELIGIBLE
                    }
                    assert alert_reasons(conn, provider_id, location_id) == reasons

    run_state_machine_as_test(
        Commands,
        settings=settings(
            max_examples=25,
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        ),
    )
