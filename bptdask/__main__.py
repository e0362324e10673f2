"""``python -m bptdask``: the ``bptdask`` command line (:mod:`bptdask.cli`)."""

import sys

from bptdask.cli import main

sys.exit(main())
