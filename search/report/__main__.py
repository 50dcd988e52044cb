"""``python -m search.report DIR``: see ``search.report.cli``."""

import sys

from .cli import main

sys.exit(main())
