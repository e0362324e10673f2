import sys

from bptdask.cli import main

sys.exit(main())
