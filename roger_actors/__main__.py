"""``python -m roger_actors``: the ``roger-actors`` command line (see :mod:`roger_actors.cli`)."""

import sys

from roger_actors.cli import main

sys.exit(main())
