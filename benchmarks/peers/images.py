"""The photo the load generator sends: a shared JPEG of about 1280×720."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from harness.local_server import shared_dir

HD_PIXELS = 1280 * 720


def pick_image(sizes: dict[Path, tuple[int, int]]) -> Path:
    """The JPEG nearest 1280×720 in pixels when one is within a quarter of it, else the
    largest."""
    near = {path: abs(w * h / HD_PIXELS - 1) for path, (w, h) in sizes.items()}
    best = min(near, key=lambda path: (near[path], path))
    if near[best] <= 0.25:
        return best
    return max(sizes, key=lambda path: (sizes[path][0] * sizes[path][1], path))


def default_image() -> Path:
    """The pick among the JPEGs of the shared photos folder."""
    folder = shared_dir() / "images"
    jpegs = [p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg")]
    if not jpegs:
        raise SystemExit(f"no JPEG in {folder}; give one with --image")
    sizes = {}
    for path in jpegs:
        with Image.open(path) as image:
            sizes[path] = image.size
    return pick_image(sizes)
