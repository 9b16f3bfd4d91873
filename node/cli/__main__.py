"""``python -m node.cli`` (what the ``magnet`` console script runs)."""

import sys

from node.cli import main

sys.exit(main())
