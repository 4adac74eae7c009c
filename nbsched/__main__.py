"""``python -m nbsched``: the command line (see :mod:`nbsched.notebook.run`)."""
import sys

from .notebook.run import main

if __name__ == "__main__":
    sys.exit(main())
