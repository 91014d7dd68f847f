"""``python -m aunet`` is the ``aunet`` command."""

import sys

from aunet.cli import main

# Guarded: processes started with "spawn" (packing) import the parent's main module under another name.
if __name__ == "__main__":
    sys.exit(main())
