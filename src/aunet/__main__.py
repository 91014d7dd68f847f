"""``python -m aunet`` is the ``aunet`` command."""

import sys

from aunet.cli import main

sys.exit(main())
