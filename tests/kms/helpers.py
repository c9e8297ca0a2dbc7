"""Test helpers for the KMS: a whole key service in memory, as the data-path tests of the modes need
(it lives with the other in-memory twins, tests/twins/)."""

from __future__ import annotations

from tests.twins.keys import memory_data_keys

__all__ = ["memory_data_keys"]
