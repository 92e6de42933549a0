"""``python -m seqtopk``: the same as the console script."""

import sys

from seqtopk.cli import main

sys.exit(main())
