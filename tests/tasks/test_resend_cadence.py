"""The automatic resend cadence, day by day with a moved clock, on SQLite and PostgreSQL.

Each simulated run is what the `invitation-resend` flow's tasks do (api.resend_due), followed
by a dispatch, so a queued step is sent the same day; the flow itself runs in tests/flows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select, update

from openslots.api import register_from_app, resend_due, set_resend_cadence
from openslots.connectors.database import lifecycle as life
from openslots.connectors.database import opt_outs
from openslots.connectors.database import resends as resend_repo
from openslots.connectors.database.listings import audit_events
from openslots.connectors.database.models import (
    Channel,
    Invitation,
    InvitationResend,
    OptOut,
    OutboxMessage,
    OutboxStatus,
)
from openslots.domain import clock
from openslots.domain.messages import resend_key
from openslots.domain.statuses import InvitationStatus
from openslots.tasks.dispatch import dispatch_outbox, materialise_intents
from openslots.tasks.resend import queue_due_resends, start_resend_run
from tests.factories import person, roster_file
from tests.tasks._dispatch import at_once, dispatch_now
from tests.tasks.test_roster_import import LOCATION, PROVIDER, run_import

# 15:00 and 23:00 UTC are 10:00 and 18:00 in New York (the default time zone): one local day.
DAY0 = dt.datetime(2026, 1, 5, 15, 0, tzinfo=dt.UTC)
RUN_HOURS = (0, 8)  # hours after 15:00: two runs a day
STEPS = (21, 30, 60, 90, 120)


def day(n: int) -> dt.date:
    return DAY0.date() + dt.timedelta(days=n)


def invite_and_send(tmp_path: Path, rows: list[list[str]], name: str = "r.csv") -> None:
    run_import(roster_file(tmp_path / name, rows))
    dispatch_now()


def simulate(
    frozen: clock.FrozenClock, days: Iterable[int], skip: Iterable[int] = ()
) -> list[dict[str, object]]:
    """Run the cadence and a dispatch at each run hour of each day not skipped."""
    results = []
    missed = set(skip)
    for n in days:
        if n in missed:
            continue
        for hour in RUN_HOURS:
            frozen.set(DAY0 + dt.timedelta(days=n, hours=hour))
            results.append(resend_due())
            if materialise_intents.fn():  # what a dispatch run does; it sends only when owed
                dispatch_outbox.fn()
    return results


def steps(db: Engine) -> dict[int, list[tuple[int, str, str | None, dt.date]]]:
    """Every decided step by invitation: (step, state, reason, as_of)."""
    with db.connect() as conn:
        rows = conn.execute(
            select(
                InvitationResend.invitation_id,
                InvitationResend.step_days,
                InvitationResend.state,
                InvitationResend.reason,
                InvitationResend.as_of,
            ).order_by(InvitationResend.invitation_id, InvitationResend.step_days)
        ).all()
    found: dict[int, list[tuple[int, str, str | None, dt.date]]] = {}
    for inv, step, state, reason, as_of in rows:
        found.setdefault(inv, []).append((step, str(state), reason, as_of))
    return found


def resend_messages(db: Engine) -> list[tuple[str, str, dt.date | None]]:
    """(key, state, day sent) of every automatic resend message."""
    with db.connect() as conn:
        rows = conn.execute(
            select(OutboxMessage.idempotency_key, OutboxMessage.status, OutboxMessage.sent_at)
            .where(OutboxMessage.idempotency_key.like("resend:%"))
            .order_by(OutboxMessage.id)
        ).all()
    return [(key, str(state), None if at is None else at.date()) for key, state, at in rows]


def invitation(db: Engine, invitation_id: int) -> tuple[str, int, dt.date, dt.date]:
    with db.connect() as conn:
        row = conn.execute(
            select(
                Invitation.status,
                Invitation.send_count,
                Invitation.first_sent_at,
                Invitation.last_sent_at,
            ).where(Invitation.id == invitation_id)
        ).one()
    return str(row.status), row.send_count, row.first_sent_at.date(), row.last_sent_at.date()


def test_150_days_twice_a_day_each_status(db: Engine, tmp_path: Path) -> None:
    """Only the invitation still Sent is resent: on each step's day, once, by both channels."""
    family = "family@example.org"
    rows = [
        person(1),  # stays Sent
        person(2),  # Registered (registers with another date of birth)
        person(3),  # Invited (registers, then the provider's request)
        person(4),  # Connected (Date of Birth Match)
        person(5),  # Opted-Out
        person(6, email=family, first_name="Gina"),  # New: another person with the email connects
        person(7, email=family, first_name="Dana", date_of_birth="2015-03-04"),  # Connected
    ]
    with clock.frozen_clock(DAY0) as frozen:
        invite_and_send(tmp_path, rows)
        frozen.set(DAY0 + dt.timedelta(hours=2))
        for n, dob in ((2, "1950-01-01"), (3, "1950-01-01"), (4, rows[3][3]), (7, rows[6][3])):
            register_from_app(
                email=rows[n - 1][4],
                date_of_birth=dob,
                first_name="Someone",
                last_name="Example",
                provider=PROVIDER if n in (4, 7) else None,
                location=LOCATION if n in (4, 7) else None,
            )
        db_provider = 1
        with db.begin() as conn:
            life.request_connection(conn, 3, "tester")
            opt_outs.opt_out(conn, db_provider, Channel.EMAIL, rows[4][4], "tester")
        with db.connect() as conn:
            statuses = dict(conn.execute(select(Invitation.id, Invitation.status)).all())
        assert statuses == {
            1: InvitationStatus.SENT,
            2: InvitationStatus.REGISTERED,
            3: InvitationStatus.INVITED,
            4: InvitationStatus.CONNECTED,
            5: InvitationStatus.OPTED_OUT,
            6: InvitationStatus.NEW,
            7: InvitationStatus.CONNECTED,
        }
        results = simulate(frozen, range(1, 151))

    assert steps(db) == {1: [(s, "queued", None, day(s)) for s in STEPS]}
    assert resend_messages(db) == [
        (resend_key(1, s, channel), "sent", day(s)) for s in STEPS for channel in ("email", "sms")
    ]
    assert invitation(db, 1) == ("Sent", 6, day(0), day(120))
    # Each step was due and queued by the first run of its day; the second run found it done.
    queued_runs = [(i // 2, r["queued"]) for i, r in enumerate(results) if r["queued"]]
    assert queued_runs == [(s - 1, 1) for s in STEPS]
    assert all(r["due"] == r["queued"] for r in results)
    assert all(r["skipped"] == {} for r in results)


def test_a_missed_week_is_caught_up_with_the_latest_step_only(db: Engine, tmp_path: Path) -> None:
    with clock.frozen_clock(DAY0) as frozen:
        invite_and_send(tmp_path, [person(1)])
        frozen.set(DAY0 + dt.timedelta(days=5))
        invite_and_send(tmp_path, [person(2)], "r2.csv")  # first sent on day 5
        # No run on days 25..31: invitation 1's step 30 and invitation 2's 21 fall in the gap.
        results = simulate(frozen, range(1, 70), skip=range(25, 32))
    assert steps(db) == {
        1: [
            (21, "queued", None, day(21)),
            (30, "queued", None, day(32)),  # caught up the day the runs came back
            (60, "queued", None, day(60)),
        ],
        2: [
            (21, "queued", None, day(32)),
            (30, "queued", None, day(35)),  # on time: the late step 21 does not delay it
            (60, "queued", None, day(65)),
        ],
    }
    assert sum(r["queued"] for r in results) == 6
    assert sorted((when, key) for key, state, when in resend_messages(db) if state == "sent") == [
        (day(when), f"resend:{inv}:{step}:{channel}")
        for when, inv, step in (
            (21, 1, 21),
            (32, 1, 30),
            (32, 2, 21),
            (35, 2, 30),
            (60, 1, 60),
            (65, 2, 60),
        )
        for channel in ("email", "sms")
    ]


def test_a_gap_over_two_steps_skips_the_earlier_as_superseded(db: Engine, tmp_path: Path) -> None:
    with clock.frozen_clock(DAY0):
        invite_and_send(tmp_path, [person(1)])
    dry = resend_due(as_of=day(45).isoformat(), dry_run=True)
    real = resend_due(as_of=day(45).isoformat())
    again = resend_due(as_of=day(45).isoformat())
    expected = {"due": 1, "queued": 1, "skipped": {"superseded": 1}}
    assert {k: real[k] for k in expected} == expected
    assert {k: v for k, v in dry.items() if k != "dry_run"} == {
        k: v for k, v in real.items() if k != "dry_run"
    }
    assert real["by_provider"] == {PROVIDER: {"cadence": list(STEPS), **expected}}
    assert (again["due"], again["queued"], again["skipped"]) == (0, 0, {})
    assert steps(db) == {1: [(21, "skipped", "superseded", day(45)), (30, "queued", None, day(45))]}
    dispatch_now()
    assert [k for k, *_ in resend_messages(db)] == ["resend:1:30:email", "resend:1:30:sms"]
    with db.connect() as conn:
        trail = audit_events(conn, "invitation", 1)
    assert [(e["action"], e["to"], e["actor"], e["reason"]) for e in trail] == [
        ("resend", "2", "resend-cadence", "cadence step 30 days")
    ]


def test_a_provider_with_its_own_cadence(db: Engine, tmp_path: Path) -> None:
    with clock.frozen_clock(DAY0) as frozen:
        invite_and_send(tmp_path, [person(1)])
        run_import(roster_file(tmp_path / "other.csv", [person(2)]), location="Elm Street")
        dispatch_now()
        assert set_resend_cadence(PROVIDER, " 2, 4 ,9")["cadence"] == [2, 4, 9]
        # Days 1..5 missed: step 2 is superseded by step 4 on day 6.
        results = simulate(frozen, range(1, 40), skip=range(1, 6))
    own = [(2, "skipped", "superseded", day(6)), (4, "queued", None, day(6))]
    assert steps(db) == {
        1: [*own, (9, "queued", None, day(9))],
        2: [*own, (9, "queued", None, day(9))],
    }
    assert results[0]["by_provider"] == {
        PROVIDER: {"cadence": [2, 4, 9], "due": 2, "queued": 2, "skipped": {"superseded": 2}}
    }
    assert set_resend_cadence(PROVIDER, "default")["cadence"] == list(STEPS)


def test_a_manual_resend_counts_as_the_step_it_falls_in(db: Engine, tmp_path: Path) -> None:
    with clock.frozen_clock(DAY0) as frozen:
        invite_and_send(tmp_path, [person(1)])
        frozen.set(DAY0 + dt.timedelta(days=25))
        with db.begin() as conn:
            assert life.resend(conn, 1, "tester") == "invite:1:2"
        # Queued but not sent yet: the cadence decides nothing while a message waits.
        waiting = resend_due()
        assert (waiting["due"], waiting["queued"], waiting["skipped"]) == (
            1,
            0,
            {"message_waiting": 1},
        )
        dispatch_now()
        results = simulate(frozen, range(25, 35))
    assert steps(db) == {
        1: [(21, "skipped", "sent_in_step", day(25)), (30, "queued", None, day(30))]
    }
    assert results[0]["skipped"] == {"sent_in_step": 1}
    with db.connect() as conn:
        keys = list(
            conn.execute(select(OutboxMessage.idempotency_key).order_by(OutboxMessage.id)).scalars()
        )
    assert keys == [
        "invite:1:1:email",
        "invite:1:1:sms",
        "invite:1:2:email",
        "invite:1:2:sms",
        "resend:1:30:email",
        "resend:1:30:sms",
    ]
    # A manual resend after a step keeps its own key (the step's messages exist).
    with db.begin() as conn:
        assert life.resend(conn, 1, "tester") == "invite:1:4"
    dispatch_now()
    assert invitation(db, 1)[1] == 4


PHONE_1 = "+14155550001"  # person(1)'s mobile, as stored (E.164)


@pytest.mark.parametrize("when", ["before materialising", "after materialising", "mid-dispatch"])
def test_an_opt_out_between_queueing_and_sending_cancels_the_step(
    db: Engine, tmp_path: Path, when: str
) -> None:
    with clock.frozen_clock(DAY0) as frozen:
        invite_and_send(tmp_path, [person(1)])
        frozen.set(DAY0 + dt.timedelta(days=21))
        assert resend_due()["queued"] == 1
        if when != "before materialising":
            assert materialise_intents.fn() == 2
        with db.begin() as conn:
            if when == "mid-dispatch":
                # A STOP committed by another process after this worker read the invitation's
                # status: only the opt-out row is there, and dispatch must see it at send time.
                conn.execute(
                    insert(OptOut).values(provider_id=1, channel=Channel.SMS, address=PHONE_1)
                )
            else:
                opt_outs.opt_out(conn, 1, Channel.SMS, PHONE_1, "tester")
        counts = dispatch_now()
    later = [resend_due(as_of=day(n).isoformat()) for n in (30, 60, 90, 120, 150)]
    assert counts.sent == 0
    if when == "before materialising":
        assert resend_messages(db) == []  # an Opted-Out invitation owes nothing
    else:
        assert [state for _, state, _ in resend_messages(db)] == ["cancelled", "cancelled"]
    assert all(state != "sent" for _, state, _ in resend_messages(db))
    if when == "mid-dispatch":
        assert counts.cancelled == 2
    else:
        assert invitation(db, 1)[:2] == ("Opted-Out", 1)
        assert all(r["due"] == r["queued"] == 0 for r in later)


def test_a_step_of_an_invitation_registered_since_is_not_sent(db: Engine, tmp_path: Path) -> None:
    with clock.frozen_clock(DAY0) as frozen:
        invite_and_send(tmp_path, [person(1)])
        frozen.set(DAY0 + dt.timedelta(days=21))
        resend_due()
        materialise_intents.fn()
        register_from_app(
            email=person(1)[4], date_of_birth="1950-01-01", first_name="A", last_name="B"
        )
        counts = dispatch_outbox.fn()
    assert counts.cancelled == 2 and counts.sent == 0
    with db.connect() as conn:
        reasons = set(
            conn.execute(
                select(OutboxMessage.last_error).where(
                    OutboxMessage.status == OutboxStatus.CANCELLED
                )
            ).scalars()
        )
    assert reasons == {"invitation is Registered: no automatic resend"}


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_two_runs_at_once_queue_each_step_once(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs in threads, each on its own connections, over the same invitations in small
    chunks: every step is queued by exactly one of them and sent once."""
    monkeypatch.setattr(resend_repo, "CHUNK", 7)
    with clock.frozen_clock(DAY0) as frozen:
        invite_and_send(tmp_path, [person(n, mobile_phone="") for n in range(1, 61)])
        frozen.set(DAY0 + dt.timedelta(days=45))
        run = start_resend_run.fn()
        results = at_once(lambda: queue_due_resends.fn(run))
        assert sum(r["queued"] for r in results) == 60
        assert sum(r["skipped"].get("superseded", 0) for r in results) == 60
        with db.connect() as conn:
            attempts = set(conn.execute(select(Invitation.attempt)).scalars())
        assert attempts == {2}
        assert dispatch_now().sent == 60
    assert sorted(k for k, *_ in resend_messages(db)) == sorted(
        f"resend:{n}:30:email" for n in range(1, 61)
    )


def test_only_sent_invitations_are_candidates_after_an_opt_in(db: Engine, tmp_path: Path) -> None:
    """An opt-in restores Sent: the cadence picks the invitation up again, at its next step."""
    with clock.frozen_clock(DAY0) as frozen:
        invite_and_send(tmp_path, [person(1)])
        frozen.set(DAY0 + dt.timedelta(days=10))
        with db.begin() as conn:
            opt_outs.opt_out(conn, 1, Channel.EMAIL, person(1)[4], "tester")
        simulate(frozen, range(10, 40))
        with db.begin() as conn:
            opt_outs.opt_in(conn, 1, Channel.EMAIL, person(1)[4], "tester")
        simulate(frozen, range(40, 65))
    # Steps 21 and 30 came while it was Opted-Out: the opt-in day catches up with 30 only.
    assert steps(db) == {
        1: [
            (21, "skipped", "superseded", day(40)),
            (30, "queued", None, day(40)),
            (60, "queued", None, day(60)),
        ]
    }


def test_nothing_is_due_without_a_first_send(db: Engine, tmp_path: Path) -> None:
    with clock.frozen_clock(DAY0):
        run_import(roster_file(tmp_path / "r.csv", [person(1)]))  # Queued, never dispatched
    assert resend_due(as_of=day(200).isoformat())["due"] == 0
    with db.begin() as conn:
        conn.execute(update(Invitation).values(status=InvitationStatus.SENT))
    assert resend_due(as_of=day(200).isoformat())["due"] == 0  # no first send: no day to count


def test_a_manual_resend_after_a_step_while_others_are_at_later_steps(
    db: Engine, tmp_path: Path
) -> None:
    """Each invitation's own latest step decides its key: invitation 2 at step 60 does not make
    invitation 1's manual resend after its step 21 look like an unsent step."""
    with clock.frozen_clock(DAY0) as frozen:
        invite_and_send(tmp_path, [person(1)])
        frozen.set(DAY0 - dt.timedelta(days=40))
        invite_and_send(tmp_path, [person(2)], "r2.csv")  # first sent 40 days earlier
        frozen.set(DAY0 + dt.timedelta(days=21))
        assert resend_due()["queued"] == 2  # invitation 1: step 21; invitation 2: step 60
        dispatch_now()
        frozen.set(DAY0 + dt.timedelta(days=22))
        with db.begin() as conn:
            assert life.resend(conn, 1, "tester") == "invite:1:3"
        assert dispatch_now().sent == 2
    with db.connect() as conn:
        keys = set(conn.execute(select(OutboxMessage.idempotency_key)).scalars())
    assert {"resend:1:21:email", "resend:2:60:email", "invite:1:3:email", "invite:1:3:sms"} <= keys
