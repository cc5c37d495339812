"""``python -m hpc_itc``: see :mod:`hpc_itc.cli`."""

import sys

from hpc_itc.cli import main

if __name__ == "__main__":
    sys.exit(main())
