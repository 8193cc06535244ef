"""Reports: what an import did (the CLI, the demo, scripts) and what each flow run publishes to
the Prefect UI (counts, findings by rule, durations; never a patient's value)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from openslots.connectors.database import batches
from openslots.resources import resources


def batch_report(batch_id: int) -> dict[str, Any]:
    """Counts and findings of an import batch, as `roster import --json` prints them.

    Raises NoResultFound for an unknown batch.
    """
    with resources().engine.connect() as conn:
        return batches.batch_report(conn, batch_id)


# --- Run reports: what each flow run publishes to the Prefect UI (counts, rules, durations) ---
#
# Built here from counts and names only (providers, locations, rules, fields: never a value of
# a row); published by openslots/tasks/publish.py. Keys are stable per flow and, for a roster,
# per provider and location, so the versions of one key are that target's history in the UI.

_NOT_KEY = re.compile(r"[^a-z0-9]+")
KEY_MAX = 100


def slug(text: str) -> str:
    """Lowercase letters, digits and dashes (a tag, a key part): "Dr. Lee" -> "dr-lee"."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return _NOT_KEY.sub("-", folded).strip("-") or "x"


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key from parts (each slugged): lowercase letters, digits, dashes."""
    return "-".join(slug(p) for p in parts)[:KEY_MAX].strip("-")


@dataclass
class RunReport:
    """One run's report: a markdown artifact (`key`) and a table artifact (`table_key`)."""

    title: str
    key: str
    table_key: str
    description: str
    counts: list[tuple[str, object]]
    table: list[dict[str, object]]
    sections: list[tuple[str, list[str]]] = field(default_factory=list)
    durations: list[tuple[str, float]] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"# {self.title}", "", "| count | value |", "|---|---|"]
        lines += [f"| {name} | {value} |" for name, value in self.counts]
        for heading, body in self.sections:
            lines += ["", f"## {heading}", "", *body]
        if self.durations:
            lines += ["", "## Durations", "", "| step | seconds |", "|---|---|"]
            lines += [f"| {name} | {seconds:.2f} |" for name, seconds in self.durations]
        return "\n".join(lines) + "\n"


def _rule_table(by_rule: dict[tuple[str, str, str], int], note: str) -> list[str]:
    if not by_rule:
        return ["None."]
    return [
        "| severity | field | rule | rows |",
        "|---|---|---|---|",
        *[f"| {s} | {f} | {r} | {n} |" for (s, f, r), n in sorted(by_rule.items())],
        "",
        note,
    ]


def roster_report(
    summary: dict[str, Any],
    stage_rejected: int,
    provider: str,
    location: str,
    by_rule: dict[tuple[str, str, str], int],
) -> RunReport:
    """The roster import's report, keyed by provider and location. The rejections reconcile on
    the page: validation (stage) + apply (duplicates in the file, clients already Approved) =
    rejected, and accepted + rejected = input rows."""
    total, accepted, rejected = summary["total_rows"], summary["accepted"], summary["rejected"]
    at_apply = rejected - stage_rejected
    batch = summary["batch_id"]
    reconcile = [
        "| step | rejected rows |",
        "|---|---|",
        f"| validation (stage: each row against the file's rules) | {stage_rejected} |",
        f"| apply (duplicates within the file, clients already Approved) | {at_apply} |",
        f"| **total rejected** | **{rejected}** |",
        "",
        f"accepted {accepted} + rejected {rejected} = {accepted + rejected} of {total} input rows"
        + ("" if accepted + rejected == total else " (MISMATCH: report this batch)"),
    ]
    counts: list[tuple[str, object]] = [
        ("input rows", total),
        ("accepted", accepted),
        ("rejected", rejected),
        ("rejected at validation", stage_rejected),
        ("rejected at apply", at_apply),
        *[
            (name.replace("_", " "), summary[name])
            for name in (
                "warnings",
                "new_clients",
                "updated_clients",
                "mrns_mapped",
                "needs_review",
                "queued_invitations",
            )
        ],
    ]
    row: dict[str, object] = {
        "provider": provider,
        "location": location,
        "batch": batch,
        "mode": summary["mode"],
        "input_rows": total,
        "accepted": accepted,
        "rejected_at_validation": stage_rejected,
        "rejected_at_apply": at_apply,
        "rejected": rejected,
        **{k: summary[k] for k in ("warnings", "new_clients", "updated_clients")},
        **{k: summary[k] for k in ("mrns_mapped", "needs_review", "queued_invitations")},
    }
    return RunReport(
        title=f"Roster import: {provider} / {location}, batch {batch} ({summary['mode']})",
        key=artifact_key("roster-import-report", provider, location),
        table_key=artifact_key("roster-import-counts", provider, location),
        description=f"roster import of {provider} / {location}, batch {batch}",
        counts=counts,
        table=[row],
        sections=[
            ("Rejected rows by step", reconcile),
            (
                "Findings by rule",
                _rule_table(
                    by_rule,
                    "A row can break several rules, so findings can outnumber rejected rows. "
                    f"Line by line: `openslots roster rejections {batch}`.",
                ),
            ),
        ],
    )


HL7_COUNTS = (
    "messages",
    "applied",
    "duplicates",
    "ignored",
    "errors",
    "warnings",
    "rows_accepted",
    "rows_rejected",
    "slots_opened",
    "slots_filled",
    "slots_reconciled",
    "slot_conflicts",
    "merges_unmatched",
    "control_ids_reused",
)


def hl7_report(flow: str, counts: dict[str, Any]) -> RunReport:
    """An HL7 run's report (hl7-import, hl7-ingest, hl7-drop): counts, files not HL7."""
    values = [(name, counts[name]) for name in HL7_COUNTS if isinstance(counts.get(name), int)]
    skipped = counts.get("skipped_files") or counts.get("failed_files") or []
    sections = [
        (
            "Outcome of each message",
            [
                f"applied {counts.get('applied', 0)} + ignored {counts.get('ignored', 0)} + "
                f"errors {counts.get('errors', 0)}: stored messages this run handled; "
                "duplicates were stored before and are not applied again.",
                "Errors by message (reason, no values): `openslots hl7 errors`.",
            ],
        )
    ]
    if skipped:
        sections.append(("Files that are not HL7", [f"{len(skipped)} file(s), moved or skipped."]))
    return RunReport(
        title=f"HL7 {flow.removeprefix('hl7-')}",
        key=artifact_key(flow, "report"),
        table_key=artifact_key(flow, "counts"),
        description=f"{flow}: messages and their outcomes",
        counts=[*values, ("files not HL7", len(skipped))],
        table=[dict(values)],
        sections=sections,
    )


DISPATCH_COUNTS = (
    "materialised",
    "claimed",
    "sent",
    "failed",
    "unknown",
    "cancelled",
    "dead",
    "returned_to_pending",
    "expired_leases",
)


def dispatch_report(counts: dict[str, Any]) -> RunReport:
    """The dispatch run's report: messages written, claimed and each send's outcome."""
    values = [(name.replace("_", " "), counts.get(name, 0)) for name in DISPATCH_COUNTS]
    by_channel = counts.get("by_channel") or {}
    return RunReport(
        title="Dispatch",
        key="dispatch-report",
        table_key="dispatch-counts",
        description="dispatch: outbox messages written, claimed and sent",
        counts=values,
        table=[{name: counts.get(name, 0) for name in DISPATCH_COUNTS} | dict(by_channel)],
        sections=[
            (
                "By channel",
                ["| channel | messages |", "|---|---|"]
                + [f"| {c} | {n} |" for c, n in sorted(by_channel.items())]
                if by_channel
                else ["None."],
            ),
            (
                "Outcome of each claimed message",
                [
                    f"claimed {counts.get('claimed', 0)}: sent {counts.get('sent', 0)}, failed "
                    f"(retried later) {counts.get('failed', 0)}, unknown (an operator decides: "
                    f"`openslots outbox list --status unknown`) {counts.get('unknown', 0)}, "
                    f"cancelled {counts.get('cancelled', 0)}, dead {counts.get('dead', 0)}."
                ],
            ),
        ],
    )


def registrations_report(
    counts: dict[str, Any], by_rule: dict[tuple[str, str, str], int]
) -> RunReport:
    """A registrations import's report: counts and rejections by rule."""
    names = ("registrations", "dob_matches", "registered", "pending_requests", "rejected")
    values = [(n.replace("_", " "), counts.get(n, 0)) for n in (*names, "warnings")]
    batch = counts.get("batch_id")
    return RunReport(
        title=f"Registrations import, batch {batch}",
        key="registrations-import-report",
        table_key="registrations-import-counts",
        description=f"registrations import batch {batch}",
        counts=values,
        table=[{n: counts.get(n, 0) for n in (*names, "warnings")}],
        sections=[
            (
                "Findings by rule",
                _rule_table(
                    by_rule, f"Line by line: `openslots registrations rejections {batch}`."
                ),
            )
        ],
    )


def resend_report(result: dict[str, Any]) -> RunReport:
    """The invitation resend run's report: due, queued, skipped per provider and reason."""
    by_provider: dict[str, dict[str, Any]] = result.get("by_provider") or {}
    skipped = result.get("skipped") or {}
    dry = " (dry run: nothing written)" if result.get("dry_run") else ""
    return RunReport(
        title=f"Invitation resends, as of {result['as_of']}{dry}",
        key="invitation-resend-report",
        table_key="invitation-resend-counts",
        description=f"invitation resends as of {result['as_of']}{dry}",
        counts=[("due", result.get("due", 0)), ("queued", result.get("queued", 0))]
        + [(f"skipped: {reason}", n) for reason, n in sorted(dict(skipped).items())],
        table=[
            {
                "provider": name,
                "cadence": ",".join(map(str, c.get("cadence", []))),
                "due": c.get("due", 0),
                "queued": c.get("queued", 0),
                "skipped": c.get("skipped", 0),
            }
            for name, c in by_provider.items()
        ],
        sections=[
            (
                "By provider",
                ["| provider | cadence | due | queued | skipped |", "|---|---|---|---|---|"]
                + [
                    f"| {name} | {','.join(map(str, c.get('cadence', [])))} | {c.get('due')} | "
                    f"{c.get('queued')} | {c.get('skipped')} |"
                    for name, c in by_provider.items()
                ]
                if by_provider
                else ["None due."],
            )
        ],
    )


def alerts_report(slot_id: int | None, counts: dict[str, Any]) -> RunReport:
    """The open-slot-alerts run's report: offers queued (each once: the outbox's key)."""
    names = ("offers_sent", "messages", "waiting", "skipped", "slots_closed")
    target = f"slot {slot_id}" if slot_id is not None else "every slot with offers due"
    return RunReport(
        title=f"Open-slot alerts: {target}",
        key="open-slot-alerts-report",
        table_key="open-slot-alerts-counts",
        description=f"open-slot alerts for {target}",
        counts=[(n.replace("_", " "), counts.get(n, 0)) for n in names],
        table=[
            {"slot": slot_id if slot_id is not None else "all"}
            | {n: counts.get(n, 0) for n in names}
        ],
        sections=[
            (
                "Why a second run queues nothing",
                [
                    "Offers already in the outbox (queued by `slots open`, the API or the HL7 "
                    "ingest) keep their unique key: a run for the same slot adds none."
                ],
            )
        ],
    )
