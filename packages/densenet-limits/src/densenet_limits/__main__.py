"""``python -m densenet_limits``: the same as the console script."""

import sys

from densenet_limits.cli import main

sys.exit(main())
