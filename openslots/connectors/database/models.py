"""SQLAlchemy 2 typed models. Patient data lives here and only here."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from openslots.domain import clock
from openslots.domain.contact import name_key
from openslots.domain.offers import OfferMode, OfferState
from openslots.domain.statuses import ClosedReason, ConnectionStatus, InvitationStatus, SlotStatus

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class OutboxStatus(StrEnum):
    """pending -> sending (leased) -> sent | failed (retried) | unknown | dead | cancelled."""

    PENDING = "pending"  # waiting for dispatch
    SENDING = "sending"  # claimed under a lease
    SENT = "sent"
    FAILED = "failed"  # refused before anything went out: retried after `next_attempt_at`
    UNKNOWN = "unknown"  # may or may not have gone out: an operator decides, never retried blindly
    CANCELLED = "cancelled"  # opted out or no longer eligible at send time
    DEAD = "dead"  # refused for good (invalid address, 5xx, retries exhausted)


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"


class ImportMode(StrEnum):
    INVITE = "invite"  # the seed's bulk invitation upload
    SYNC = "sync"  # the nightly roster sync from the EHR
    REGISTRATIONS = "registrations"  # a registrations file (its rejections kept like a roster's)


class BatchStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C/SIGTERM, or its process died (no heartbeat)


class OutboxKind(StrEnum):
    """Why a message is sent (`outbox.kind`)."""

    INVITATION = "invitation"
    RESEND = "resend"  # an invitation's later attempt (the `resend` template)
    SLOT_ALERT = "slot_alert"  # an Open Slots offer (`offer_id`)
    SLOT_CONFIRMED = "slot_confirmed"  # the claim won (`offer_id`: the winner's)
    SLOT_UNAVAILABLE = "slot_unavailable"  # someone else won (`offer_id`: this patient's)


class FindingSeverity(StrEnum):
    """How a finding about a roster line counts (`import_rejections.severity`)."""

    ERROR = "error"  # the line is rejected
    WARNING = "warning"  # applied as is
    REVIEW = "review"  # applied, a person should look at it


class StagingState(StrEnum):
    """What a staged roster row may still do while its batch applies (`roster_staging.state`)."""

    OK = "ok"  # to apply and invite
    CONNECTED = "connected"  # matches an Approved connection (sync: refresh, no invitation)
    HELD = "held"  # matches several people: kept for review without an invitation
    INVITED = "invited"  # the client already has an invitation at this location


class Hl7MessageStatus(StrEnum):
    """Where a stored HL7 message is: stored -> applying -> applied | ignored | error."""

    STORED = "stored"  # acknowledged, waiting to be applied
    APPLYING = "applying"  # claimed by an ingest run
    APPLIED = "applied"
    IGNORED = "ignored"  # a message type the pipeline does not use
    ERROR = "error"  # unreadable or refused; `error` names segment, field and rule


def _enum(enum: type[StrEnum], name: str) -> Enum:
    return Enum(
        enum,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [member.value for member in members],
    )


def _name_key_default(context: Any) -> str:
    """Computed from the names on every INSERT (Core or ORM); an UPDATE of a name must set
    name_key too."""
    params = context.get_current_parameters()
    return name_key(params.get("first_name") or "", params.get("last_name") or "")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: DateTime(timezone=True)}


class Timestamped:
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.now, server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(
        default=clock.now, onupdate=clock.now, server_default=func.now()
    )


class Provider(Timestamped, Base):
    __tablename__ = "providers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    integrated: Mapped[bool] = mapped_column(Boolean, default=False)
    # Whether new patients from the EHR feed with an email or phone are invited automatically.
    auto_invite: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # The resend cadence in days ("21,30,60,90,120"); None: OPENSLOTS_RESEND_CADENCE.
    resend_cadence: Mapped[str | None] = mapped_column(String(64))
    # The HL7 feed (MSH-3 sending application, MSH-4 sending facility) whose MRNs this
    # provider's connections carry: A40 merges from that feed apply here only.
    feed_application: Mapped[str | None] = mapped_column(String(180))
    feed_facility: Mapped[str | None] = mapped_column(String(180))


class Location(Timestamped, Base):
    __tablename__ = "locations"
    __table_args__ = (UniqueConstraint("provider_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    # IANA zone of the location's wall clock (slot starts, quiet hours); None: the default.
    timezone: Mapped[str | None] = mapped_column(String(64))


class Client(Timestamped, Base):
    """A patient as a provider's roster knows them; a dependent carries guardian names.

    For a dependent, `email` and `mobile_phone` are the guardian's (the seed's template).
    """

    __tablename__ = "clients"
    __table_args__ = (
        UniqueConstraint("provider_id", "client_ref"),
        Index("ix_clients_provider_email_dob", "provider_id", "email", "date_of_birth"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"))
    client_ref: Mapped[str] = mapped_column(String(64))  # the practice's Client ID / MRN
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    date_of_birth: Mapped[dt.date] = mapped_column(Date)
    # Required to invite, not to know a patient: EHR feeds often carry none.
    email: Mapped[str | None] = mapped_column(String(254))
    mobile_phone: Mapped[str | None] = mapped_column(String(20))
    guardian_first_name: Mapped[str | None] = mapped_column(String(100))
    guardian_last_name: Mapped[str | None] = mapped_column(String(100))
    last_batch_id: Mapped[int | None] = mapped_column(Integer)


class Connection(Timestamped, Base):
    """One client x provider x location; comes from the client's side (mobile app)."""

    __tablename__ = "connections"
    __table_args__ = (
        Index("ix_connections_provider_mrn", "provider_id", "mrn"),
        Index("ix_connections_provider_email_dob", "provider_id", "email", "date_of_birth"),
        Index("ix_connections_provider_dob_name", "provider_id", "date_of_birth", "name_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"))
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="SET NULL"))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    date_of_birth: Mapped[dt.date] = mapped_column(Date)
    email: Mapped[str] = mapped_column(String(254))  # stored lower-cased
    mobile_phone: Mapped[str | None] = mapped_column(String(20))
    name_key: Mapped[str] = mapped_column(String(201), default=_name_key_default)
    status: Mapped[ConnectionStatus] = mapped_column(
        _enum(ConnectionStatus, "connection_status"), default=ConnectionStatus.PENDING
    )
    priority: Mapped[str | None] = mapped_column(String(50))
    mrn: Mapped[str | None] = mapped_column(String(64))
    # The practice's order for Serial offers (`connections set-order`), then id; None: last.
    alert_order: Mapped[int | None] = mapped_column(Integer)
    # When the client can come ("Mon-Fri 08:00-12:00; Sat 09:00-11:00", location time); None: any.
    availability: Mapped[str | None] = mapped_column(String(200))


class Invitation(Timestamped, Base):
    __tablename__ = "invitations"
    __table_args__ = (
        UniqueConstraint("client_id", "location_id"),
        # Only owed intents: each dispatch finds them without walking every invitation
        # (115 ms -> 0.05 ms at 100,000 invitations when nothing is owed).
        Index(
            "ix_invitations_owed",
            "id",
            postgresql_where=text("messages_attempt < attempt"),
            sqlite_where=text("messages_attempt < attempt"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    # No foreign key: the client's provider already is one, and on PostgreSQL each key costs a
    # trigger call per row (a third of the time of queueing a million invitations).
    provider_id: Mapped[int] = mapped_column(Integer, index=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    status: Mapped[InvitationStatus] = mapped_column(
        _enum(InvitationStatus, "invitation_status"), default=InvitationStatus.QUEUED
    )
    batch_id: Mapped[int | None] = mapped_column(Integer, index=True)
    # The status an opt-out replaced, restored by an opt-in.
    status_before_opt_out: Mapped[str | None] = mapped_column(String(16))
    requested_at: Mapped[dt.datetime | None]  # provider-initiated request sent to the app
    first_sent_at: Mapped[dt.datetime | None]
    last_sent_at: Mapped[dt.datetime | None]
    send_count: Mapped[int] = mapped_column(Integer, default=0)
    # The intent: while Queued, attempt `attempt` is owed; dispatch turns it into outbox
    # messages and records that here, so an intent is materialised once.
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    messages_attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class OptOut(Base):
    """An address that opted out of a provider's messages, on every channel."""

    __tablename__ = "opt_outs"
    __table_args__ = (UniqueConstraint("provider_id", "channel", "address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"))
    channel: Mapped[Channel] = mapped_column(_enum(Channel, "channel"))
    address: Mapped[str] = mapped_column(String(254))  # lower-cased email or E.164 phone
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.now, server_default=func.now())


class OutboxMessage(Base):
    """Every outgoing message, written in the transaction that caused it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_status_id", "status", "id"),
        Index("ix_outbox_invitation_id", "invitation_id"),
        Index("ix_outbox_offer_id", "offer_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[Channel] = mapped_column(_enum(Channel, "channel"))
    invitation_id: Mapped[int | None] = mapped_column(
        ForeignKey("invitations.id", ondelete="CASCADE")
    )
    offer_id: Mapped[int | None] = mapped_column(ForeignKey("offers.id", ondelete="CASCADE"))
    status: Mapped[OutboxStatus] = mapped_column(
        _enum(OutboxStatus, "outbox_status"), default=OutboxStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)  # PHI-free: class and rule only
    lease_expires_at: Mapped[dt.datetime | None]
    worker_id: Mapped[str | None] = mapped_column(String(64))  # who holds the lease
    # Set just before the message is handed to a sender: only then can its outcome be unknown.
    send_started_at: Mapped[dt.datetime | None]
    next_attempt_at: Mapped[dt.datetime | None]  # when a failed message may be tried again
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.now, server_default=func.now())
    sent_at: Mapped[dt.datetime | None]


class ImportBatch(Base):
    """One roster file import: the counts a user sees, kept for audit."""

    __tablename__ = "import_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Resolved (and created on first use) only when the file applies: a failed or strict-
    # rejected import leaves no provider behind.
    provider_name: Mapped[str] = mapped_column(String(200))
    location_name: Mapped[str] = mapped_column(String(200))
    integrated: Mapped[bool] = mapped_column(Boolean, default=False)
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"))
    location_id: Mapped[int | None] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(500))
    mode: Mapped[ImportMode] = mapped_column(_enum(ImportMode, "import_mode"))
    strict: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[BatchStatus] = mapped_column(
        _enum(BatchStatus, "batch_status"), default=BatchStatus.RUNNING
    )
    total_rows: Mapped[int] = mapped_column(Integer, default=0)
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    warnings: Mapped[int] = mapped_column(Integer, default=0)
    new_clients: Mapped[int] = mapped_column(Integer, default=0)
    updated_clients: Mapped[int] = mapped_column(Integer, default=0)
    mrns_mapped: Mapped[int] = mapped_column(Integer, default=0)
    needs_review: Mapped[int] = mapped_column(Integer, default=0)
    queued_invitations: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)  # PHI-free
    started_at: Mapped[dt.datetime] = mapped_column(default=clock.now, server_default=func.now())
    finished_at: Mapped[dt.datetime | None]
    # Who runs it ("host:pid:nonce") and when it last said so: a running batch whose heartbeat
    # is stale belongs to a dead process and is cleaned up as interrupted.
    worker_id: Mapped[str | None] = mapped_column(String(64))
    heartbeat_at: Mapped[dt.datetime | None]


class ImportRejection(Base):
    """A finding about one roster line: rejected (error), warning, or needs review."""

    __tablename__ = "import_rejections"
    __table_args__ = (Index("ix_import_rejections_batch_line", "batch_id", "line"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("import_batches.id", ondelete="CASCADE"))
    line: Mapped[int] = mapped_column(Integer)
    field: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(16), default=FindingSeverity.ERROR.value)


class RosterStaging(Base):
    """Validated rows of a running import, applied to `clients` set-wise, then deleted.

    UNLOGGED on PostgreSQL (set by the migration): it is rebuilt from the file on any failure,
    so the write-ahead log buys nothing.
    """

    __tablename__ = "roster_staging"
    __table_args__ = (Index("ix_roster_staging_batch_ref", "batch_id", "client_ref"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(Integer)
    line: Mapped[int] = mapped_column(Integer)
    client_ref: Mapped[str] = mapped_column(String(64))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    date_of_birth: Mapped[dt.date] = mapped_column(Date)
    email: Mapped[str | None] = mapped_column(String(254))
    mobile_phone: Mapped[str | None] = mapped_column(String(20))
    guardian_first_name: Mapped[str | None] = mapped_column(String(100))
    guardian_last_name: Mapped[str | None] = mapped_column(String(100))
    first_key: Mapped[str] = mapped_column(String(100))  # casefolded first name
    name_key: Mapped[str] = mapped_column(String(201))  # see domain.contact.name_key
    # a StagingState
    state: Mapped[str] = mapped_column(
        String(16), default=StagingState.OK.value, server_default=StagingState.OK.value
    )
    # The file row's fingerprint (domain/fingerprints.py); None for rows not from a roster file.
    row_hash: Mapped[int | None] = mapped_column(BigInteger)


class RosterFingerprint(Base):
    """A roster file row that a completed import applied and that needs nothing more while it
    stays the same: the next import of that provider + location skips an identical row before
    reading it further (see domain/fingerprints.py for what makes a row settled, and
    connectors/database/fingerprints.py for what removes one).

    Derived data, like the staging tables: no foreign keys (a million fingerprints would cost
    a million key checks, each locking its client row), UNLOGGED on PostgreSQL. Every path
    that deletes or merges clients, locations or providers deletes their fingerprints.
    """

    __tablename__ = "roster_fingerprints"
    __table_args__ = (Index("ix_roster_fingerprints_client_id", "client_id"),)

    provider_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    location_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    row_hash: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    client_id: Mapped[int] = mapped_column(Integer)
    settled_on: Mapped[dt.date] = mapped_column(Date)


class RosterVerification(Base):
    """When the settled rows of a provider + location + import mode were last checked against
    the provider's connections: connections changed since (less a margin) re-open the settled
    rows they could match."""

    __tablename__ = "roster_verifications"

    provider_id: Mapped[int] = mapped_column(
        ForeignKey("providers.id", ondelete="CASCADE"), primary_key=True
    )
    location_id: Mapped[int] = mapped_column(
        ForeignKey("locations.id", ondelete="CASCADE"), primary_key=True
    )
    mode: Mapped[str] = mapped_column(String(16), primary_key=True)
    verified_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class RosterMatch(Base):
    """Staged rows x the connections they match (best tier only), while a batch applies."""

    __tablename__ = "roster_matches"
    __table_args__ = (
        Index("ix_roster_matches_batch_row", "batch_id", "row_id"),
        Index("ix_roster_matches_batch_connection", "batch_id", "connection_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(Integer)
    row_id: Mapped[int] = mapped_column(Integer)
    line: Mapped[int] = mapped_column(Integer)
    client_ref: Mapped[str] = mapped_column(String(64))
    connection_id: Mapped[int] = mapped_column(Integer)
    connection_mrn: Mapped[str | None] = mapped_column(String(64))
    approved: Mapped[bool] = mapped_column(Boolean)
    person_key: Mapped[str] = mapped_column(String(300))
    tier: Mapped[int] = mapped_column(Integer)
    ambiguous: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    shared: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Registration(Base):
    """A mobile-app registration as the app's backend reports it (patient data)."""

    __tablename__ = "registrations"
    __table_args__ = (Index("ix_registrations_email_dob", "email", "date_of_birth"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))  # lower-cased
    date_of_birth: Mapped[dt.date] = mapped_column(Date)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    mobile_phone: Mapped[str | None] = mapped_column(String(20))
    dependent_first_name: Mapped[str | None] = mapped_column(String(100))
    dependent_last_name: Mapped[str | None] = mapped_column(String(100))
    dependent_date_of_birth: Mapped[dt.date | None] = mapped_column(Date)
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("providers.id", ondelete="SET NULL"))
    location_id: Mapped[int | None] = mapped_column(ForeignKey("locations.id", ondelete="SET NULL"))
    outcome: Mapped[str] = mapped_column(String(32), default="registered")
    received_at: Mapped[dt.datetime] = mapped_column(default=clock.now, server_default=func.now())


class AuditEvent(Base):
    """Who changed what, when, from what to what, and why (connections, invitations, opt-outs)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity", "entity", "entity_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(32))
    from_value: Mapped[str | None] = mapped_column(String(254))
    to_value: Mapped[str | None] = mapped_column(String(254))
    actor: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.now, server_default=func.now())


# A stored message's identity, in the unique index's order (the store's ON CONFLICT names it).
IDENTITY_COLUMNS = ("control_id", "sending_application", "sending_facility", "content_hash")
IDENTITY_STORED = "control_id <> ''"  # the unique index's condition, as a query must say it


class Hl7Message(Base):
    """Every HL7 message received, stored before it is acknowledged (raw bytes: patient data)."""

    __tablename__ = "hl7_messages"
    __table_args__ = (
        Index(
            # A message is stored once, whoever stores it (an empty control id never repeats).
            # control_id first: redelivery checks look messages up by control id, and say
            # `control_id <> ''` (IDENTITY_STORED) so that this partial index serves them.
            "uq_hl7_messages_identity",
            *IDENTITY_COLUMNS,
            unique=True,
            sqlite_where=text(IDENTITY_STORED),
            postgresql_where=text(IDENTITY_STORED),
        ),
        Index("ix_hl7_messages_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sending_application: Mapped[str] = mapped_column(String(180), default="")
    sending_facility: Mapped[str] = mapped_column(String(180), default="")
    control_id: Mapped[str] = mapped_column(String(199), default="")
    message_type: Mapped[str] = mapped_column(String(20), default="")
    content_hash: Mapped[str] = mapped_column(String(64))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    source: Mapped[str] = mapped_column(String(16))  # mllp | file
    # a Hl7MessageStatus; a redelivery is counted, never stored twice
    status: Mapped[str] = mapped_column(String(16), default=Hl7MessageStatus.STORED.value)
    error: Mapped[str | None] = mapped_column(Text)  # segment, field and rule; never a value
    control_id_reused: Mapped[bool] = mapped_column(Boolean, default=False)
    received_at: Mapped[dt.datetime] = mapped_column(default=clock.now, server_default=func.now())
    processed_at: Mapped[dt.datetime | None]
    # An `applying` message whose lease expired (its ingest run died) is claimed again.
    lease_expires_at: Mapped[dt.datetime | None]


class Slot(Base):
    """An appointment slot: opened by the EHR's schedule feed (cancel/delete/move away), by
    staff (`slots open`) or the API; offered while open; claimed once, or closed."""

    __tablename__ = "slots"
    __table_args__ = (
        Index("ix_slots_provider_location_start", "provider_id", "location_id", "starts_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slot_key: Mapped[str] = mapped_column(String(400), unique=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"))
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    filler_id: Mapped[str] = mapped_column(String(100))  # the EHR's appointment id ("" if none)
    start: Mapped[str] = mapped_column(String(32))  # the start as sent (HL7 DTM or ISO text)
    # The instant it starts; None only for a row 0003 could not convert (then closed).
    starts_at: Mapped[dt.datetime | None]
    duration_minutes: Mapped[int | None] = mapped_column(Integer)
    visit_type: Mapped[str | None] = mapped_column(String(100))  # what the practice shows
    status: Mapped[SlotStatus] = mapped_column(_enum(SlotStatus, "slot_status"))
    closed_reason: Mapped[ClosedReason | None] = mapped_column(
        _enum(ClosedReason, "slot_closed_reason")
    )
    mode: Mapped[OfferMode] = mapped_column(
        _enum(OfferMode, "offer_mode"), default=OfferMode.BLAST, server_default="blast"
    )
    group_size: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    timeout_minutes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    claimed_offer_id: Mapped[int | None] = mapped_column(Integer)  # the winner's offer
    message_id: Mapped[int | None] = mapped_column(Integer)
    opened_at: Mapped[dt.datetime | None]
    filled_at: Mapped[dt.datetime | None]  # booked in the EHR
    claimed_at: Mapped[dt.datetime | None]
    closed_at: Mapped[dt.datetime | None]
    # A claimed slot is booked here, not yet in the EHR: a scheduler (or an SIU^S12 for the
    # winner's MRN, by "hl7") records that it reached the EHR's calendar.
    reconciled_at: Mapped[dt.datetime | None]
    reconciled_by: Mapped[str | None] = mapped_column(String(100))
    # An SIU^S12 at this time for another patient while the slot was claimed: reported, never
    # applied over the claim (`slots list --conflicts`).
    conflict_message_id: Mapped[int | None] = mapped_column(Integer)
    conflict_at: Mapped[dt.datetime | None]


class Offer(Base):
    """One connection's offer of one slot: an intent with a due time, which dispatch turns into
    outbox messages (`offer:{id}:{channel}`) once due; a Serial slot's later groups wait here."""

    __tablename__ = "offers"
    __table_args__ = (
        UniqueConstraint("slot_id", "connection_id"),
        Index("ix_offers_state_due_at", "state", "due_at"),
        # The contact cap and "offered least recently first" read a connection's recent offers.
        Index("ix_offers_connection_id_sent_at", "connection_id", "sent_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slot_id: Mapped[int] = mapped_column(ForeignKey("slots.id", ondelete="CASCADE"))
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    group_number: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[dt.datetime]
    state: Mapped[OfferState] = mapped_column(
        _enum(OfferState, "offer_state"), default=OfferState.PENDING
    )
    reason: Mapped[str | None] = mapped_column(String(32))  # an ExplainReason when held/skipped
    claim_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    sent_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.now, server_default=func.now())
    viewed_at: Mapped[dt.datetime | None]  # the claim page's beacon (never a bare GET)
    declined_at: Mapped[dt.datetime | None]  # "Not for me": final for this patient and slot


class ResendStepState(StrEnum):
    """What became of one cadence step of one invitation (`invitation_resends.state`)."""

    QUEUED = "queued"  # a resend intent for this step was queued (dispatch sends it)
    SKIPPED = "skipped"  # passed over (`reason`, e.g. superseded by a later due step)


class InvitationResend(Base):
    """One automatic-resend cadence step of one invitation, decided once: the unique key makes
    a second run (that day, or on another machine) queue nothing twice."""

    __tablename__ = "invitation_resends"
    __table_args__ = (UniqueConstraint("invitation_id", "step_days"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    invitation_id: Mapped[int] = mapped_column(ForeignKey("invitations.id", ondelete="CASCADE"))
    step_days: Mapped[int] = mapped_column(Integer)  # days after the first send
    state: Mapped[ResendStepState] = mapped_column(_enum(ResendStepState, "resend_step_state"))
    reason: Mapped[str | None] = mapped_column(String(32))  # why skipped; no values
    as_of: Mapped[dt.date] = mapped_column(Date)  # the run's as-of date
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.now, server_default=func.now())


class AppSecret(Base):
    """Installation-wide secrets generated on first use (the token signing key when
    OPENSLOTS_SECRET_KEY is unset), so every process of one installation agrees."""

    __tablename__ = "app_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.now, server_default=func.now())
