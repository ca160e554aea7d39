"""Uploads built to cost memory or time, generated on the fly with little memory.

PNGs are written row block by row block through zlib, so a 40000x40000 image costs the
test a few hundred kilobytes, not the gigabytes it decodes to.
"""

from __future__ import annotations

import json
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_ROWS_PER_BLOCK = 256


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png(width: int, height: int, *, bit_depth: int = 8, colour_type: int = 0) -> bytes:
    """A blank PNG of any size; colour type 0 is greyscale, 2 RGB, 6 RGBA."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    row = b"\x00" * (1 + -(-width * channels * bit_depth // 8))
    compressor = zlib.compressobj(9)
    block = row * _ROWS_PER_BLOCK
    whole, rest = divmod(height, _ROWS_PER_BLOCK)
    parts = [compressor.compress(block) for _ in range(whole)]
    parts += [compressor.compress(row * rest), compressor.flush()]
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )


def ico_around(image: bytes, declared: int = 16) -> bytes:
    """An ICO whose directory announces a ``declared``-pixel square icon holding ``image``."""
    header = struct.pack("<HHH", 0, 1, 1)
    entry = struct.pack("<BBBBHHII", declared, declared, 0, 0, 1, 32, len(image), 6 + 16)
    return header + entry + image


_MEASURE = """
import json, resource, sys, time
sys.path.insert(0, {repo!r})
from service.card import Preprocessing
from service.errors import ArgosError
from service.preprocessing import load_rgb, open_image, prepare_bytes
data = open({path!r}, "rb").read()
spec = Preprocessing(input_size=(224, 224), resize="center_crop", crop_pct=0.875)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.process_time()
try:
    if {full!r}:
        load_rgb(open_image(data, max_pixels={max_pixels}))
    else:
        prepare_bytes(data, spec, max_pixels={max_pixels})
    outcome = "ok"
except ArgosError as error:
    outcome = type(error).__name__ + ": " + error.detail
seconds = time.process_time() - started
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({{"outcome": outcome, "seconds": seconds, "grown_mb": grown / 1024}}))
"""


def measure_decode(
    data: bytes, tmp: Path, *, full: bool = False, max_pixels: int = 50_000_000
) -> dict[str, object]:
    """Decode ``data`` in a fresh interpreter: outcome, CPU seconds (steady on a busy
    machine, unlike wall time) and peak RSS growth (MB).

    ``full`` decodes at full resolution as ``/detect`` does; otherwise as ``/classify``.
    """
    path = tmp / "upload.bin"
    path.write_bytes(data)
    code = _MEASURE.format(repo=str(REPO), path=str(path), full=full, max_pixels=max_pixels)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(done.stdout.splitlines()[-1])


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
