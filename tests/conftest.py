"""Root conftest: the whole suite runs on one torch thread, and the core helpers' fixtures are visible.

The helpers live in ``core_helpers.py`` (a unique module name: sub-folders have conftest.py files of
their own, so ``from conftest import`` would be ambiguous).
"""
from core_helpers import assert_error  # noqa: F401  (a fixture)
