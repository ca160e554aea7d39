"""``python -m training``: build, train and export Argos models."""

from training.cli import main

raise SystemExit(main())
