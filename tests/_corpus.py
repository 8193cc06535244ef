"""Where the shared public HL7 corpus is: `../shared/corpus/hl7-public` beside the repository root.

Every test that reads the corpus gets it from `hl7_public_corpus()`, so the lookup works from any
checkout (main, a worktree, CI) and a missing corpus fails under CI=true instead of skipping.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import pytest


def repository_root() -> Path:
    """The directory holding pyproject.toml above this file (a worktree's root, not its .git)."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    raise RuntimeError("no pyproject.toml above tests/: the tests are not inside the repository")


HL7_PUBLIC = repository_root().parent / "shared" / "corpus" / "hl7-public"


def hl7_public_corpus() -> Path:
    """The corpus directory. Missing: the test fails when CI=true (CI must run it), else skips."""
    if (HL7_PUBLIC / "MANIFEST.tsv").is_file():
        return HL7_PUBLIC
    reason = f"the public HL7 corpus is missing: expected {HL7_PUBLIC}/MANIFEST.tsv"
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{reason} (CI=true: the corpus is required)")
    pytest.skip(reason)


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    message_type: str  # as the manifest records it, e.g. ADT^A01^ADT_A01


def hl7_public_manifest() -> list[CorpusFile]:
    """Every message file the manifest lists, in its order (fails/skips like the directory)."""
    root = hl7_public_corpus()
    with (root / "MANIFEST.tsv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [CorpusFile(root / row["file"], row["message_type"]) for row in rows]
