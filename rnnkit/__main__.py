"""``python -m rnnkit``: the same command as ``rnnkit`` (see rnnkit/cli.py)."""
import sys

from .cli import main

sys.exit(main())
