"""``python -m ctxcomp``: the same as the ``ctxcomp`` command."""

import sys

if __name__ == "__main__":
    from ctxcomp.cli import main

    sys.exit(main())
