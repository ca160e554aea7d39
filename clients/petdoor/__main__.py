"""`python -m clients.petdoor` runs the pet-door command line."""

from __future__ import annotations

import sys

from clients.petdoor.cli import main

sys.exit(main())
