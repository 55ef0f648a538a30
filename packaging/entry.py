"""Entry script of the executable: the same as ``python -m tqd``."""

import sys

from tqd.cli import main

if __name__ == "__main__":
    sys.exit(main())
