"""Fixtures shared by the Admin API tests.

Every case that sends a body runs twice, as a ``curl --data`` form and as JSON
(the ``encoding`` fixture): operators use both, and the form path has its own
decoding and type conversion.
"""
from __future__ import annotations

import pytest


@pytest.fixture(params=["form", "json"])
def encoding(request: pytest.FixtureRequest) -> str:
    return request.param
