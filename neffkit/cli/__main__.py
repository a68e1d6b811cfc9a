"""``python -m neffkit.cli``: the same as ``python -m neffkit`` and the ``neffkit`` command."""

from __future__ import annotations

import sys

from neffkit.cli import main

sys.exit(main())
