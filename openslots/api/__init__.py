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
from openslots.api.offers import decline_offer, mark_offer_viewed, offer_page
from openslots.api.practice import (
    accept_connection_request,
    add_provider,
    audit_events,
    end_imports_of_this_process,
    hl7_errors,
    import_batches,
    import_report,
    invite,
    list_connections,
    list_invitations,
    list_providers,
    merge_providers,
    opt_in,
    opt_out,
    register_from_app,
    registration_rejections,
    rename_provider,
    request_connection,
    requeue_hl7_messages,
    resend_invitation,
    set_availability,
    set_connection_status,
    set_mrn,
    set_priority,
    set_provider_feed,
    set_provider_integrated,
    upgrade_schema,
)
from openslots.api.resends import InvalidCadence, resend_due, set_resend_cadence
from openslots.api.slots import (
    claim_slot,
    close_slot,
    explain_slot,
    list_slots,
    open_slot,
    reconcile_slot,
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
    "decline_offer",
    "end_imports_of_this_process",
    "explain_slot",
    "hl7_errors",
    "import_batches",
    "import_report",
    "invite",
    "list_connections",
    "list_invitations",
    "list_providers",
    "list_slots",
    "mark_offer_viewed",
    "merge_providers",
    "offer_page",
    "open_slot",
    "opt_in",
    "opt_out",
    "outbox_list",
    "outbox_resolve",
    "outbox_retry",
    "outbox_retry_all_failed",
    "outbox_status",
    "reconcile_slot",
    "register_from_app",
    "registration_rejections",
    "rename_provider",
    "request_connection",
    "requeue_hl7_messages",
    "require_current_schema",
    "resend_due",
    "resend_invitation",
    "set_alert_order",
    "set_availability",
    "set_connection_status",
    "set_mrn",
    "set_priority",
    "set_provider_feed",
    "set_provider_integrated",
    "set_resend_cadence",
    "sms_inbound",
    "unsubscribe",
    "upgrade_schema",
]
