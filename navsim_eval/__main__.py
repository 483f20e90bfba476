"""``python -m navsim_eval``: the same as the ``navsim-eval`` command."""

import sys

from navsim_eval.cli import main

if __name__ == "__main__":
    sys.exit(main())
