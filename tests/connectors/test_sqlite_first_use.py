"""Two first commands at once on a new SQLite file: the second waits for the first's write
instead of failing with `database is locked` while it switches the file to WAL."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from sqlalchemy import text

from openslots.connectors.database.engine import SQLITE_CACHE_KIB, _create


def test_switching_a_new_file_to_wal_waits_for_another_writer(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    first = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    first.execute("CREATE TABLE first_command (x INTEGER)")
    first.execute("BEGIN IMMEDIATE")  # the other command's first transaction, still open
    first.execute("INSERT INTO first_command VALUES (1)")
    # SQLite refuses the WAL switch at once here (no busy handler): prove the premise.
    probe = sqlite3.connect(path, isolation_level=None, timeout=5)
    try:
        probe.execute("PRAGMA journal_mode=WAL")
        raise AssertionError("expected SQLite to refuse the mode change while a write is open")
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
    finally:
        probe.close()

    commit_later = threading.Timer(0.5, lambda: first.execute("COMMIT"))
    commit_later.start()
    engine = _create(f"sqlite:///{path}", pool_size=5)
    try:
        with engine.connect() as conn:
            mode = conn.execute(text("PRAGMA journal_mode")).scalar_one()
            rows = conn.execute(text("SELECT count(*) FROM first_command")).scalar_one()
    finally:
        commit_later.join()
        engine.dispose()
        first.close()
    assert (mode, rows) == ("wal", 1)


def test_every_connection_has_the_large_page_cache_and_foreign_keys(tmp_path: Path) -> None:
    engine = _create(f"sqlite:///{tmp_path / 'cache.db'}", pool_size=5)
    try:
        with engine.connect() as conn:
            cache = conn.execute(text("PRAGMA cache_size")).scalar_one()
            keys = conn.execute(text("PRAGMA foreign_keys")).scalar_one()
    finally:
        engine.dispose()
    assert (cache, keys) == (-SQLITE_CACHE_KIB, 1)
