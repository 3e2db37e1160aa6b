"""``python -m orchestrator_client.cli``, the same as ``taskctl``."""

import sys

from . import main

sys.exit(main())
