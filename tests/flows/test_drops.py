"""Where the drop flows look: the `directory` parameter, else OPENSLOTS_DROP_DIR, else
OPENSLOTS_HOME/drop, made on first use, so a scheduled run on a new install finds an empty drop
instead of failing; a directory that was named but is missing is one line naming it and where
it was named. Empty drops run no subflow: the flows' functions are called without Prefect."""

from __future__ import annotations

from pathlib import Path

import pytest

from openslots.errors import ConfigurationError
from openslots.flows.drops import hl7_drop, roster_drop


def test_the_default_drop_is_made_on_first_use(isolated_env: Path) -> None:
    assert not isolated_env.exists()  # a new install
    assert roster_drop.fn() == {"files": 0, "imported": [], "failed": []}
    assert hl7_drop.fn() == {"files": 0, "skipped_files": []}
    assert (isolated_env / "drop" / "roster").is_dir()
    assert (isolated_env / "drop" / "hl7").is_dir()


def test_a_named_drop_directory_must_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "sftp-mount"
    monkeypatch.setenv("OPENSLOTS_DROP_DIR", str(missing))
    with pytest.raises(ConfigurationError) as caught:
        roster_drop.fn()
    assert str(caught.value) == (
        f"drop directory {missing} does not exist: create it, or point OPENSLOTS_DROP_DIR at "
        "one that does"
    )
    with pytest.raises(ConfigurationError, match="the `directory` parameter"):
        hl7_drop.fn(directory=str(tmp_path / "elsewhere"))
    assert not missing.exists()

    missing.mkdir()  # the mount is back: the folders of each kind are ours to make
    assert hl7_drop.fn()["files"] == 0
    assert (missing / "hl7").is_dir()
