"""`openslots web` over real HTTP (uvicorn on a loopback port), on SQLite and PostgreSQL: a GET
claims nothing, two racing POSTs give one 200 and one 409, forged and unknown links, decline
and the viewed beacon, the one-click unsubscribe, the headers, the rate limits, and an access
log without tokens."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, select

from openslots import api
from openslots.connectors.database.models import Offer, OutboxMessage
from openslots.domain.clock import FrozenClock, frozen_clock
from openslots.domain.tokens import make_token
from openslots.resources import resources
from openslots.web import create_app
from tests.tasks._dispatch import dispatch_now
from tests.tasks.test_open_slots import LOCATION, NOON, PROVIDER, TOMORROW_10, add, token_for

SECURITY_HEADERS = {
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
}


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # a thread cannot; the test stops it
        pass


class Ticker:
    """The rate limiter's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@contextlib.contextmanager
def serving(**limits: object) -> Iterator[httpx.Client]:
    """The app on a free loopback port, and a client for it."""
    config = uvicorn.Config(
        create_app(**limits),  # type: ignore[arg-type]
        host="127.0.0.1",
        port=0,
        access_log=False,
        log_config=None,
        lifespan="off",
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def clock(db: Engine) -> Iterator[FrozenClock]:
    with frozen_clock(NOON) as frozen:
        yield frozen


@pytest.fixture
def ticker() -> Ticker:
    return Ticker()


@pytest.fixture
def web(clock: FrozenClock, ticker: Ticker) -> Iterator[httpx.Client]:
    with serving(clock=ticker) as client:
        yield client


def sent_blast(db: Engine, n: int = 2, **open_args: object) -> tuple[int, list[int]]:
    """A slot offered to `n` connections, its alerts sent: (slot id, connection ids)."""
    ids = [add(db, i) for i in range(1, n + 1)]
    slot_id = api.open_slot(PROVIDER, LOCATION, TOMORROW_10, 30, **open_args)["slot_id"]  # type: ignore[arg-type]
    dispatch_now()
    return slot_id, ids


def viewed_at(db: Engine, connection_id: int) -> dt.datetime | None:
    with db.connect() as conn:
        return conn.execute(
            select(Offer.viewed_at).where(Offer.connection_id == connection_id)
        ).scalar()


def listed(slot_id: int) -> dict[str, object]:
    return next(s for s in api.list_slots() if s["id"] == slot_id)


def test_a_get_claims_nothing_and_two_racing_posts_give_one_200_and_one_409(
    db: Engine, web: httpx.Client
) -> None:
    slot_id, (first, second) = sent_blast(db, visit_type="Checkup")
    tokens = [token_for(db, slot_id, first), token_for(db, slot_id, second)]
    page = web.get(f"/claim/{tokens[0]}")
    assert page.status_code == 200
    assert "Claim this appointment" in page.text and "Not for me" in page.text
    assert "Dr. Slot" in page.text and "Checkup" in page.text and "10:00 AM" in page.text
    state = listed(slot_id)
    assert (state["status"], state["claims_tried"], state["viewed"]) == ("open", 0, 0)

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda t: web.post(f"/claim/{t}"), tokens))
    assert sorted(a.status_code for a in answers) == [200, 409]
    won = next(a for a in answers if a.status_code == 200)
    lost = next(a for a in answers if a.status_code == 409)
    assert "It's yours" in won.text
    assert "no longer available" in lost.text
    for name in ("Pat1", "Pat2", "pat1@", "pat2@"):  # never who else claimed
        assert name not in lost.text
    winner = tokens[answers.index(won)]
    assert web.post(f"/claim/{winner}").status_code == 200  # the winner again: still won
    assert listed(slot_id)["status"] == "claimed"


def test_forged_altered_unknown_and_expired_links(
    db: Engine, web: httpx.Client, clock: FrozenClock
) -> None:
    slot_id, (first, _) = sent_blast(db)
    token = token_for(db, slot_id, first)
    altered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    unknown = make_token(resources().secret_key(), "claim", 999, NOON + dt.timedelta(days=2))
    for path in ("/claim/forged.token", f"/claim/{altered}", "/claim/%2e%2e"):
        assert web.post(path).status_code in (400, 404)
        assert web.get(path).status_code in (400, 404)
    assert web.post("/claim/forged.token").status_code == 400
    assert web.post(f"/claim/{altered}").status_code == 400
    assert web.get(f"/claim/{unknown}").status_code == 404
    assert web.post(f"/claim/{unknown}").status_code == 404
    assert web.post(f"/claim/{unknown}/decline").status_code == 404
    assert listed(slot_id)["claims_tried"] == 0
    clock.advance(dt.timedelta(days=2))  # past the start: the link has expired
    expired = web.post(f"/claim/{token}")
    assert expired.status_code == 409 and "no longer available" in expired.text
    assert web.get(f"/claim/{token}").status_code == 409


def test_decline_is_final_and_the_page_beacon_marks_viewed_once(
    db: Engine, web: httpx.Client, clock: FrozenClock
) -> None:
    slot_id, (first, second) = sent_blast(db)
    token = token_for(db, slot_id, first)
    page = web.get(f"/claim/{token}")
    assert 'src="/static/claim.js"' in page.text
    assert f'data-viewed="/claim/{token}/viewed"' in page.text
    script = web.get("/static/claim.js")
    assert script.status_code == 200 and "sendBeacon" in script.text
    assert viewed_at(db, first) is None
    assert web.post(f"/claim/{token}/viewed").status_code == 204
    clock.advance(dt.timedelta(minutes=5))
    assert web.post(f"/claim/{token}/viewed").status_code == 204
    seen = viewed_at(db, first)
    assert seen is not None and seen.replace(tzinfo=dt.UTC) == NOON
    assert web.post("/claim/forged.token/viewed").status_code == 400

    declined = web.post(f"/claim/{token}/decline")
    assert declined.status_code == 200 and "not for you" in declined.text
    assert web.post(f"/claim/{token}/decline").status_code == 200  # idempotent
    refused = web.post(f"/claim/{token}")
    assert refused.status_code == 409 and "Claim this appointment" not in refused.text
    assert "Claim this appointment" not in web.get(f"/claim/{token}").text
    state = listed(slot_id)
    assert (state["viewed"], state["declined"], state["status"]) == (1, 1, "open")
    assert web.post(f"/claim/{token_for(db, slot_id, second)}").status_code == 200


def test_unsubscribe_page_form_and_rfc_8058_one_click(db: Engine, web: httpx.Client) -> None:
    sent_blast(db, 2)
    with db.connect() as conn:
        outbox_ids = list(
            conn.execute(select(OutboxMessage.id).order_by(OutboxMessage.id)).scalars()
        )
    key = resources().secret_key()
    first, second = (
        make_token(key, "unsubscribe", i, NOON + dt.timedelta(days=30)) for i in outbox_ids[:2]
    )
    confirm = web.get(f"/unsubscribe/{first}")
    assert confirm.status_code == 200 and "<form" in confirm.text
    assert api.unsubscribe(first)["action"] == "opted_out"  # the GET changed nothing before
    one_click = web.post(
        f"/unsubscribe/{second}",
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (one_click.status_code, one_click.text) == (200, "unsubscribed")
    assert api.unsubscribe(second)["action"] == "already_opted_out"
    multipart = web.post(f"/unsubscribe/{second}", files={"List-Unsubscribe": (None, "One-Click")})
    assert (multipart.status_code, multipart.text) == (200, "unsubscribed")
    again = web.post(f"/unsubscribe/{second}")
    assert again.status_code == 200 and "unsubscribed" in again.text
    assert web.post("/unsubscribe/forged.token").status_code == 400
    gone = make_token(key, "unsubscribe", 99999, NOON + dt.timedelta(days=30))
    assert web.post(f"/unsubscribe/{gone}").status_code == 404


def test_every_response_carries_the_security_headers(db: Engine, web: httpx.Client) -> None:
    slot_id, (first, _) = sent_blast(db)
    token = token_for(db, slot_id, first)
    for response in (
        web.get(f"/claim/{token}"),
        web.get("/claim/forged.token"),
        web.post("/unsubscribe/forged.token"),
        web.get("/nowhere"),
        web.get("/static/claim.js"),
    ):
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value
        policy = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
        assert "unsafe-inline" not in policy


def test_claims_are_rate_limited_per_token_and_per_address(
    db: Engine, web: httpx.Client, ticker: Ticker
) -> None:
    slot_id, (first, _) = sent_blast(db)
    token = token_for(db, slot_id, first)
    codes = [web.post(f"/claim/{token}/decline").status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]
    limited = web.post(f"/claim/{token}")
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    ticker.now += 60
    assert web.post(f"/claim/{token}/decline").status_code == 200
    # Per address: 20 tries a minute whatever the tokens (forged ones count too).
    ticker.now += 60
    codes = [web.post(f"/claim/forged{i}.token").status_code for i in range(21)]
    assert codes == [400] * 20 + [429]
    assert web.post(f"/unsubscribe/other{0}.token").status_code == 429
    assert web.get(f"/claim/{token}").status_code == 200  # reading a page is not a try


def test_the_access_log_names_paths_without_tokens(
    db: Engine, web: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    slot_id, (first, _) = sent_blast(db)
    token = token_for(db, slot_id, first)
    with caplog.at_level(logging.INFO, logger="openslots.web.access"):
        web.get(f"/claim/{token}?utm=x")
        web.post(f"/claim/{token}/viewed")
        web.post(f"/claim/{token}")
        web.post(f"/unsubscribe/{token}")
    lines = [r.getMessage() for r in caplog.records if r.name == "openslots.web.access"]
    assert len(lines) == 4
    assert '"GET /claim/{token}" 200' in lines[0]
    assert '"POST /claim/{token}/viewed" 204' in lines[1]
    everything = " ".join(r.getMessage() for r in caplog.records)
    assert token not in everything and token.split(".")[0] not in everything
    assert "utm" not in everything


def test_an_unmigrated_database_is_a_503_page_not_a_500(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, ticker: Ticker
) -> None:
    monkeypatch.setenv("OPENSLOTS_DATABASE_URL", f"sqlite:///{tmp_path}/empty.db")
    with serving(clock=ticker) as client:
        response = client.post("/claim/forged.token")
        assert response.status_code in (400, 503)
        token = make_token("k" * 32, "claim", 1, NOON + dt.timedelta(days=365 * 20))
        monkeypatch.setenv("OPENSLOTS_SECRET_KEY", "k" * 32)
        response = client.get(f"/claim/{token}")
    assert response.status_code == 503
    assert response.headers["cache-control"] == "no-store"


def test_openslots_web_serves_from_a_real_process(db: Engine) -> None:
    """The command itself: a subprocess on a free port answers with the same rules."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "openslots.cli", "web", "--port", str(port), "--json"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ), text=True
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline()]
        while lines[-1] not in ("}\n", ""):  # one JSON document, indented
            lines.append(process.stdout.readline())
        started = json.loads("".join(lines))
        assert started == {"host": "127.0.0.1", "port": port, "public_url": "http://127.0.0.1:8000"}
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.post(f"http://127.0.0.1:{port}/claim/forged.token", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.05)
        assert response.status_code == 400
        assert response.headers["referrer-policy"] == "no-referrer"
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert '"POST /claim/{token}" 400' in stderr and "forged.token" not in stderr
