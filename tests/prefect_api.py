"""Calls to a real Prefect server's REST API from the end-to-end tests (serve, deploy)."""

from __future__ import annotations

import time
from typing import Any

import httpx


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
