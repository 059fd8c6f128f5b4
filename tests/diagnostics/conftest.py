"""The diagnostics tests run tiny models: one torch thread is as fast, and far faster on a busy
machine, where a second OpenMP thread makes every small matmul wait for a descheduled core."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
