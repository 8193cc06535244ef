"""Row fingerprints and the skipped-row bookkeeping (pure logic: no database)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from openslots.domain.fingerprints import (
    EXTRA,
    SETTLED_DAYS,
    SettledRows,
    dob_floor,
    hashed_columns,
    row_hashes,
    salt,
)

COLUMNS = ["client_id", "first_name", "last_name", EXTRA]


def frame(*rows: tuple[str, str, str, bool], dtype: object = "str") -> pd.DataFrame:
    data = pd.DataFrame(rows, columns=COLUMNS)
    return data.astype({c: dtype for c in COLUMNS[:3]}).astype({EXTRA: bool})


def test_every_field_and_the_extra_fields_flag_change_the_fingerprint() -> None:
    key = salt(COLUMNS, "US", "sync")
    base = ("001", "Ann", "Lee", False)
    variants = [base, ("002", "Ann", "Lee", False), ("001", "Anne", "Lee", False),
                ("001", "Ann", "Le", False), ("001", "Ann", "Lee", True)]  # fmt: skip
    hashes = row_hashes(frame(*variants), COLUMNS, key)
    assert hashes.dtype == np.int64 and len(set(hashes.tolist())) == len(variants)
    # The same row hashes the same in another chunk, in another position, as object strings.
    again = row_hashes(frame(("x", "y", "z", False), base, dtype=object), COLUMNS, key)
    assert again[1] == hashes[0]


def test_a_field_holding_the_separator_cannot_pass_for_shifted_fields() -> None:
    key = salt(COLUMNS, "US", "sync")
    one = row_hashes(frame(("001", "A\x1fB", "C", False)), COLUMNS, key)
    other = row_hashes(frame(("001", "A", "B\x1fC", False)), COLUMNS, key)
    assert one[0] != other[0]


def test_the_salt_covers_columns_region_and_mode() -> None:
    keys = {
        salt(COLUMNS, "US", "sync"),
        salt(COLUMNS, "CA", "sync"),
        salt(COLUMNS, "US", "invite"),
        salt(COLUMNS[:2], "US", "sync"),
    }
    assert len(keys) == 4 and all(len(key) == 16 for key in keys)


def test_hashed_columns_follow_the_roster_order_and_keep_the_flag() -> None:
    assert hashed_columns(["last_name", EXTRA, "zzz", "client_id"], COLUMNS[:3]) == [
        "client_id",
        "last_name",
        EXTRA,
    ]


def test_skipped_rows_are_reopened_by_fingerprint_and_duplicates_always() -> None:
    settled = SettledRows("k" * 16, COLUMNS, np.array([30, 10, 20], dtype=np.int64), (1, 2))
    hashes = np.array([10, 11, 20, 30, 10], dtype=np.int64)
    mask = settled.settled(hashes)
    assert mask.tolist() == [True, False, True, True, True]
    settled.skip(np.array([2, 4, 5, 6]), hashes[mask])
    assert settled.skipped == 4
    # 10 was skipped twice (identical rows): both come back even when not asked for.
    assert settled.reopen(np.array([30], dtype=np.int64)) == {2, 5, 6}
    assert settled.skipped == 1 and settled.reopen(np.empty(0, np.int64)) == set()
    assert settled.hashing_only().settled(hashes).tolist() == [False] * 5


def test_rows_near_the_130_year_limit_are_not_settled() -> None:
    oldest = dt.date(1896, 12, 1)
    assert dob_floor(oldest) == oldest + dt.timedelta(days=SETTLED_DAYS + 1)
