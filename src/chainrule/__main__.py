"""``python -m chainrule ...`` runs the command line (see chainrule.cli)."""

import sys

from .cli import main

sys.exit(main())
