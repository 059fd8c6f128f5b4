"""Root conftest: the whole suite runs on one torch thread, and the core helpers' fixtures are visible.

The checks written for a GPU are in ``test_cuda.py`` (skipped without CUDA).

The helpers live in ``core_helpers.py`` (a unique module name: sub-folders have conftest.py files of
their own, so ``from conftest import`` would be ambiguous).
"""
from core_helpers import assert_error  # noqa: F401  (a fixture)

import pytest  # noqa: E402

from rnnkit.engine.fused import buffers  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def pool_every_buffer():
    """The fused engine pools only large CPU blocks; tests use small shapes, so the whole suite runs with
    every block pooled: each test is also a test that reusing blocks never changes a result."""
    saved = buffers.MIN_BYTES
    buffers.MIN_BYTES = 0
    yield
    buffers.MIN_BYTES = saved
