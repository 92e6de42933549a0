"""``python -m psm``: the same as the console script."""

import sys

from psm.cli import main

sys.exit(main())
