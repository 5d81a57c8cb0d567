"""``python -m distst``: the ``distst`` command where only the interpreter is on PATH (a Ray
worker's runtime environment, a container without console scripts)."""

import sys

from distst.cli import main

if __name__ == "__main__":
    sys.exit(main())
