"""Fixtures for the Klaviyo client tests."""

from __future__ import annotations

import pytest
from klaviyo_fakes import FakeClock


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
