"""``python -m kernelkit``: the same as the console script."""

import sys

from kernelkit.cli import main

sys.exit(main())
