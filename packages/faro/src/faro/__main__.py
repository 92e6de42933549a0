"""``python -m faro``: the same as the console script."""

import sys

from faro.cli import main

sys.exit(main())
