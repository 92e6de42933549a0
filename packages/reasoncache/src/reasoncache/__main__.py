"""``python -m reasoncache``: the same as the console script."""

import sys

from reasoncache.cli import main

sys.exit(main())
