"""Point Keras at pre-downloaded weights, for machines without internet access."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def use_keras_cache(models_dir: Path) -> Path:
    """Make ``weights="imagenet"`` read from ``models_dir`` instead of downloading.

    Keras looks for weights in ``$KERAS_HOME/models``; this builds such a home in a
    temporary folder with ``models`` linked to ``models_dir``. It must run before Keras is
    imported, because Keras reads ``KERAS_HOME`` once at import.
    """
    models_dir = Path(models_dir).resolve()
    if not models_dir.is_dir():
        raise FileNotFoundError(f"Keras weights folder {models_dir} does not exist")
    if "keras" in sys.modules:
        raise RuntimeError("use_keras_cache() must run before keras is imported")
    home = Path(tempfile.mkdtemp(prefix="argos-keras-"))
    (home / "models").symlink_to(models_dir, target_is_directory=True)
    os.environ["KERAS_HOME"] = str(home)
    return home
