"""``python -m csrv2``: the same as the console script."""

import sys

from csrv2.cli import main

sys.exit(main())
