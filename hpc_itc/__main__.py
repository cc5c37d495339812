"""``python -m hpc_itc``: see :mod:`hpc_itc.cli`."""

import os
import sys

_package = sys.modules.get("hpc_itc")
if _package is not None and getattr(_package, "__file__", None) is None:
    # A folder named hpc_itc in the current directory (typically a checkout: `git clone ... hpc_itc` and
    # running from its parent) was imported as a namespace package in place of the installed one.
    shadow = ", ".join(str(p) for p in getattr(_package, "__path__", []))
    print(f"error: hpc_itc: the folder {shadow} shadows the installed package (Python imports a folder of that name "
          f"from the current directory first); run from another folder, e.g. cd {os.path.join(shadow.split(', ')[0], '')}",
          file=sys.stderr)
    sys.exit(2)

from hpc_itc.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
