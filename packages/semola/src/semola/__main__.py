"""``python -m semola``: the same as the console script."""

import sys

from semola.cli import main

sys.exit(main())
