"""Prefect flows: thin compositions of tasks; the only modules that know the flow API."""

from openslots.connectors.prefect_server import install as _install_temporary_server

# Before any flow runs: Prefect's temporary server survives Ctrl-C and dies with its parent.
_install_temporary_server()
