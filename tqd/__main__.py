"""``python -m tqd`` and the frozen executable start here."""

import sys

from tqd.cli import main

if __name__ == "__main__":
    sys.exit(main())
