"""Command line for model building: ``python -m training <command> ...``.

Heavy imports (TensorFlow, Keras) happen inside the commands, after ``--keras-cache`` has
been applied, because Keras reads its cache location once at import.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from training.keras_cache import use_keras_cache


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keras-cache",
        type=Path,
        default=os.environ.get("ARGOS_KERAS_CACHE") or None,
        help="folder of pre-downloaded Keras weights (env ARGOS_KERAS_CACHE); "
        "without it Keras downloads them",
    )
    parser.add_argument("--out", type=Path, default=Path("models"), help="artifact root folder")
    parser.add_argument(
        "--no-register", action="store_true", help="do not add the artifact to the BentoML store"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    default = commands.add_parser("default-model", help="export the stock ImageNet MobileNetV2")
    _add_common(default)
    default.add_argument(
        "--parity-images",
        type=Path,
        default=os.environ.get("ARGOS_SAMPLE_IMAGES") or None,
        help="photos to compare Keras and ONNX on (env ARGOS_SAMPLE_IMAGES)",
    )
    default.add_argument(
        "--if-missing",
        action="store_true",
        help="do nothing when the BentoML store already holds the default model",
    )
    return parser


def _default_model(args: argparse.Namespace) -> int:
    from service import store
    from service.settings import DEFAULT_MODEL

    if args.if_missing and store.exists(f"{DEFAULT_MODEL}:latest"):
        logging.info("%s is already in the BentoML store", DEFAULT_MODEL)
        return 0
    from training.imagenet import build_default_model

    card, out_dir = build_default_model(args.out, args.parity_images)
    print(
        f"exported {card.tag} to {out_dir}: parity max |Δp| {card.parity.max_abs_diff:.2e}, "
        f"top-1 agreement {card.parity.top1_agreement:.0%} on {card.parity.source}"
    )
    if not args.no_register:
        print(f"registered {store.register(out_dir)} in the BentoML store")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if args.keras_cache is not None:
        use_keras_cache(args.keras_cache)
    handlers = {"default-model": _default_model}
    return handlers[args.command](args)
