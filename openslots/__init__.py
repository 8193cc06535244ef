"""openslots: the integration pipeline behind Open Slots alerts (rosters, invitations, alerts)."""

__version__ = "0.1.0"
