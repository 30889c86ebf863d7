"""``python -m seqloom.train ...`` (what ``torchrun`` launches): the same as ``seqloom train ...``."""

from __future__ import annotations

import sys

from seqloom.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
