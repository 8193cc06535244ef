"""The Python API: one function per command or screen, used by the CLI, the web app and the
mobile app's backend. Patient data goes straight to the database; nothing here runs through
Prefect.

The pattern: each function checks that the schema is current (it never migrates: only
`upgrade_schema`, i.e. `openslots db upgrade`, does), opens its own connection (reads) or
transaction (commands), and calls the repositories in `connectors/database/`, which hold all
the SQL. Pipeline work (imports, dispatch, HL7 ingest) is done by the flows instead.

Example::

    from openslots.api import register_from_app
    register_from_app(email="ana@example.org", date_of_birth="1990-01-02", first_name="Ana",
                      last_name="Ruiz", provider="Dr. Lee", location="Main St")
    # -> {"registration_id": 1, "outcome": "dob_match", "connected_invitations": [3], ...}
"""

from openslots.api._session import (
    InvalidRegistration,
    NotFoundError,
    require_current_schema,
)
from openslots.api.messages import (
    NotOurNumber,
    outbox_list,
    outbox_resolve,
    outbox_retry,
    outbox_retry_all_failed,
    outbox_status,
    sms_inbound,
    unsubscribe,
)
from openslots.api.practice import (
    accept_connection_request,
    add_provider,
    audit_events,
    hl7_errors,
    import_report,
    invite,
    list_connections,
    list_invitations,
    list_providers,
    opt_in,
    opt_out,
    register_from_app,
    request_connection,
    requeue_hl7_messages,
    resend_invitation,
    set_connection_status,
    set_mrn,
    set_priority,
    upgrade_schema,
)
from openslots.api.resends import InvalidCadence, resend_due, set_resend_cadence
from openslots.api.slots import (
    claim_slot,
    close_slot,
    explain_slot,
    list_slots,
    open_slot,
    set_alert_order,
)

__all__ = [
    "InvalidCadence",
    "InvalidRegistration",
    "NotFoundError",
    "NotOurNumber",
    "accept_connection_request",
    "add_provider",
    "audit_events",
    "claim_slot",
    "close_slot",
    "explain_slot",
    "hl7_errors",
    "import_report",
    "invite",
    "list_connections",
    "list_invitations",
    "list_providers",
    "list_slots",
    "open_slot",
    "opt_in",
    "opt_out",
    "outbox_list",
    "outbox_resolve",
    "outbox_retry",
    "outbox_retry_all_failed",
    "outbox_status",
    "register_from_app",
    "request_connection",
    "requeue_hl7_messages",
    "require_current_schema",
    "resend_due",
    "resend_invitation",
    "set_alert_order",
    "set_connection_status",
    "set_mrn",
    "set_priority",
    "set_resend_cadence",
    "sms_inbound",
    "unsubscribe",
    "upgrade_schema",
]
