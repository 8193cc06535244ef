"""Prefect tasks: one step of a flow each; they pass ids and counts, never patient data."""
