"""``retain_freed_memory`` sets glibc's malloc thresholds (in a child process, so this one is untouched)
and can be switched off."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

CODE = "from rnnkit.train.memory import retain_freed_memory as r; print(r())"


def run(**env) -> str:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env={**os.environ, **env},
                         check=True)
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_applied_on_glibc_and_switched_off_by_the_environment():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert run() == "True"
    assert run(RNNKIT_MALLOC="default") == "False"
