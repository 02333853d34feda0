"""wdparity inside a user's own test suite: the pytest plugin (`pytest --wdparity PATH...`, plugin.py) and
`assert_equivalent` / `assert_diverges` for tests written in Python (assertions.py)."""

from wdparity.testing.assertions import assert_diverges, assert_equivalent, check_runs

__all__ = ["assert_equivalent", "assert_diverges", "check_runs"]
