"""``python -m g1``: the same as the console script."""

import sys

from g1.cli import main

sys.exit(main())
