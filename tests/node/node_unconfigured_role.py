"""A role whose service cannot be made without a network profile (as the real validator's)."""

from __future__ import annotations

from typing import Any


def create_service(core: Any) -> Any:
    if core.profile is None:
        raise ValueError("the teapot role needs a network profile: pass --network FILE")
    raise AssertionError("not reached in the tests")
