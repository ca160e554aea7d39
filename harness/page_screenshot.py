"""Take the README's screenshot of the page: ``python -m harness.page_screenshot [PNG]``.

Starts a local server with the default model, opens ``/`` in the system Chromium, sends
``pets.jpg`` from the shared photos, finds the objects and saves a 256-colour PNG
(default ``docs/page.png``).
"""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path

from PIL import Image
from playwright.sync_api import expect, sync_playwright

from harness.local_server import REPO, local_server, shared_dir

PHOTO = "pets.jpg"
VIEWPORT = {"width": 960, "height": 760}


def screenshot(url: str, photo: Path) -> bytes:
    """PNG bytes of the page at ``url`` after classifying and detecting ``photo``."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"))
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(f"{url}/")
        page.set_input_files("#file", photo)
        expect(page.locator("#predictions li")).to_have_count(5, timeout=60_000)
        page.click("#detect")
        expect(page.locator("#detections li").first).to_be_visible(timeout=60_000)
        expect(page.locator("#detect")).to_be_enabled(timeout=60_000)
        png = page.screenshot()
        browser.close()
    return png


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "page.png"
    with local_server(quiet=True) as server:
        png = screenshot(server.url, shared_dir() / "images" / PHOTO)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    print(f"{target}: {target.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
