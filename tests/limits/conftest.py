"""Fixtures shared by the limit tests."""

from tests.limits.test_rate_limits import limited

__all__ = ["limited"]
