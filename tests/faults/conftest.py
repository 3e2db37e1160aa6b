from __future__ import annotations

import pytest

from tests.faults.profile import Profile, current


@pytest.fixture
def profile() -> Profile:
    return current()
