"""``python -m pipeline.apps.cli`` runs the ``qa-search`` command."""

import sys

from pipeline.apps.cli.main import main

sys.exit(main())
