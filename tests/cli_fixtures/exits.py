"""Calls sys.exit(3) while being imported, like a script without a ``__main__`` guard."""

import sys

sys.exit(3)
