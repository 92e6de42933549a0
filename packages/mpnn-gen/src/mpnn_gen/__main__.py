"""``python -m mpnn_gen``: the same as the console script."""

import sys

from mpnn_gen.cli import main

sys.exit(main())
