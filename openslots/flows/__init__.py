"""Prefect flows: thin compositions of tasks; the only modules that know the flow API."""

from openslots.connectors.prefect_server import install as _install_temporary_server
from openslots.flows._heartbeats import install as _install_heartbeats

# Before any flow runs: Prefect's temporary server survives Ctrl-C and dies with its parent.
_install_temporary_server()
# A sync flow run ends when its work does, not on the next whole second (flows/_heartbeats.py).
_install_heartbeats()
