"""`python -m wdparity describe FILE.py:NAME` (and every other subcommand): the same CLI as `wdparity`."""

import sys

from wdparity.cli import main

sys.exit(main())
