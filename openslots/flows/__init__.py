"""Prefect flows: thin compositions of tasks; the only modules that know the flow API."""
