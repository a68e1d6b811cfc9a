"""``python -m neffkit``: the same as the ``neffkit`` command."""

from __future__ import annotations

import sys

from neffkit.cli import main

sys.exit(main())
