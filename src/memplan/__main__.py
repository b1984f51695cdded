"""``python -m memplan ...``: the same command line as the ``memplan`` script."""

import sys

from memplan.cli import main

sys.exit(main())
