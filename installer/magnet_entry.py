"""The bundle's entry point: the same ``magnet`` command line (no command opens the desktop app)."""

import sys

from node.cli import main

if __name__ == "__main__":
    sys.exit(main())
