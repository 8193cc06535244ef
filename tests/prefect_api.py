"""Helpers of the end-to-end tests that run a real Prefect server (serve, deploy, benchmarks):
a child process's environment, and calls to the server's REST API."""

from __future__ import annotations

import os
import time
from typing import Any

import httpx


def clean_environ() -> dict[str, str]:
    """This process's environment without any PREFECT_* or OPENSLOTS_* setting: a child
    started with it sees only what the test adds."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "OPENSLOTS_"))
    }


def api(method: str, url: str, **kwargs: Any) -> Any:
    """One Prefect API call, retried as Prefect's own client retries: a 503 is the server
    saying "retry" (its SQLite database was busy, say, while deployments are registered and
    the scheduler inserts runs)."""
    for _ in range(40):
        response = httpx.request(method, url, timeout=30, **kwargs)
        if response.status_code != 503:
            break
        time.sleep(0.5)
    assert response.is_success, f"{method} {url}: {response.status_code} {response.text}"
    return response.json()
