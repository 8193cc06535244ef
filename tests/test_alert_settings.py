"""The Open Slots alert settings: their defaults, `off`, and a malformed window refused."""

from __future__ import annotations

from datetime import time

import pytest
from pydantic import ValidationError

from openslots.settings import Settings


def test_alert_defaults_are_the_documented_ones() -> None:
    settings = Settings()
    assert settings.alert_min_lead_minutes == 120
    assert settings.resolved_alert_quiet_hours() == (time(21), time(8))
    assert Settings(alert_quiet_hours="OFF").resolved_alert_quiet_hours() is None


@pytest.mark.parametrize("value", ["9pm-8am", "21:00-24:00", "21:00"])
def test_a_malformed_alert_window_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="HH:MM-HH:MM"):
        Settings(alert_quiet_hours=value)
    with pytest.raises(ValidationError):
        Settings(alert_min_lead_minutes=-1)
