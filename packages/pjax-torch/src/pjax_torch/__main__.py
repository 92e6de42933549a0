"""``python -m pjax_torch``: the same as the console script."""

import sys

from pjax_torch.cli import main

sys.exit(main())
