"""Command line for model building: ``python -m training <command> ...``.

Heavy imports (TensorFlow, Keras) happen inside the commands, after ``--keras-cache`` has
been applied, because Keras reads its cache location once at import.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path

import yaml

from training.config import DEFAULT_CONFIG, TrainConfig, documented_keys, load_config
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


def _regex(text: str) -> str:
    """A regular expression, checked here so that a bad one is a usage error."""
    try:
        re.compile(text)
    except re.error as error:
        raise argparse.ArgumentTypeError(f"not a regular expression: {error}") from error
    return text


def _yaml_value(text: str) -> object:
    """A flag value read as YAML, as in the config files: ``null``, ``true``, ``0.1``, ..."""
    return yaml.safe_load(text)


def _add_config(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` and one ``--key value`` override per key of the default config."""
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML training config, e.g. training/configs/pets.yaml; keys it leaves out "
        f"take their value from {DEFAULT_CONFIG.name}",
    )
    overrides = parser.add_argument_group(
        "config overrides", f"each replaces one key of the config (see {DEFAULT_CONFIG.name})"
    )
    for key, doc in documented_keys(DEFAULT_CONFIG).items():
        meaning = doc.meaning.replace("%", "%%")
        overrides.add_argument(
            f"--{key.replace('_', '-')}",
            dest=key,
            type=_yaml_value,
            default=argparse.SUPPRESS,
            metavar=doc.type.split()[0].upper(),
            help=f"({doc.type}) {meaning} [default: {doc.value}]",
        )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The defaults, then ``--config``, then the override flags that were given."""
    keys = documented_keys(DEFAULT_CONFIG)
    return load_config(args.config, {key: getattr(args, key) for key in keys if key in args})


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

    train = commands.add_parser(
        "train",
        help="train a classifier on an image folder, export it and register it",
        description="Two-phase transfer learning on a folder with one sub-folder per class; "
        "the run folder <out>/<name>/<version> gets the ONNX artifact and its reports.",
    )
    _add_common(train)
    train.add_argument(
        "--cross-validation",
        type=Path,
        default=None,
        metavar="CV_JSON",
        help="cv.json of a cross-validation of the same recipe: its figures go into the card",
    )
    _add_config(train)

    cv = commands.add_parser(
        "cv",
        help="cross-validate a training config: per-fold and pooled accuracy with a 95 %% interval",
        description="Stratified k-fold cross-validation with the training pipeline unchanged; "
        "writes cv.json, cv.png, confusion_matrix.png and errors.png to <out>/<name>-cv/<version>.",
    )
    cv.add_argument(
        "--keras-cache",
        type=Path,
        default=os.environ.get("ARGOS_KERAS_CACHE") or None,
        help="folder of pre-downloaded Keras weights (env ARGOS_KERAS_CACHE)",
    )
    cv.add_argument("--out", type=Path, default=Path("models"), help="report root folder")
    cv.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    _add_config(cv)

    door = commands.add_parser(
        "door-eval",
        help="count the images of each class folder that would open the pet door",
        description="Offline pet-door check with onnxruntime: every image of every class "
        "folder is one frame for a fresh door, judged by the pet-door client's own policy "
        "and door logic with the model's labels and label groups.",
    )
    door.add_argument(
        "--model",
        default=None,
        help="artifact folder (with card.json) or BentoML store tag; default: the default "
        "model's latest version",
    )
    door.add_argument(
        "--policy",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "clients" / "petdoor" / "policy.example.yaml",
        help="pet-door policy file (default: clients/petdoor/policy.example.yaml)",
    )
    door.add_argument(
        "--debounce-frames",
        type=int,
        default=1,
        help="frames in a row needed to open; 1 (default): one photo is enough",
    )
    source = door.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="folder of class sub-folders")
    source.add_argument(
        "--predictions",
        type=Path,
        help="predictions.csv of a cross-validation of --model's recipe: out-of-fold "
        "probabilities instead of running the model",
    )
    source.add_argument(
        "--others",
        type=Path,
        help="flat folder of photos of none of the model's classes: how many open the door, "
        "and how many the model answers unknown",
    )
    door.add_argument(
        "--skip",
        help="with --others: positions in sorted file order to leave out, e.g. 151-293 "
        "(ImageNet's dogs, wolves, foxes and cats in ../shared/data/imagenet_samples)",
    )

    quantize = commands.add_parser(
        "quantize",
        help="make a static INT8 variant of a model, judged against it, registered as <name>-int8",
        description="onnxruntime static quantization (QDQ, per-channel) calibrated on images "
        "preprocessed as the card says, then compared with the float model on images "
        "calibration never saw: refused (exit status 1, nothing written or registered) "
        "over the bounds.",
    )
    quantize.add_argument("--out", type=Path, default=Path("models"), help="artifact root folder")
    quantize.add_argument(
        "--no-register", action="store_true", help="do not add the variant to the BentoML store"
    )
    quantize.add_argument(
        "--model",
        default=None,
        help="float artifact folder (with card.json) or BentoML store tag; default: the "
        "default model's latest version",
    )
    quantize.add_argument(
        "--calibration",
        type=Path,
        default=None,
        metavar="FOLDER",
        help="photos: a seeded sample of them calibrates, the others judge (agreement only); "
        "without it, a trained model's own split: training images calibrate, the test split "
        "judges (agreement and accuracy)",
    )
    quantize.add_argument(
        "--data", type=Path, default=None, help="a trained model's data folder, if it has moved"
    )
    quantize.add_argument(
        "--cross-validation",
        type=Path,
        default=None,
        metavar="CV_DIR",
        help="a finished cross-validation of a trained model's recipe (python -m training cv): "
        "each fold's model is quantized the same way, calibrated on images outside its fold, "
        "and the accuracy bound applies to the pooled out-of-fold accuracy, INT8 vs float",
    )
    quantize.add_argument(
        "--calibration-images", type=int, default=200, help="images to calibrate on (200)"
    )
    quantize.add_argument("--seed", type=int, default=0, help="seed of the calibration sample")
    quantize.add_argument(
        "--parity-images",
        type=Path,
        default=os.environ.get("ARGOS_SAMPLE_IMAGES") or None,
        required=not os.environ.get("ARGOS_SAMPLE_IMAGES"),
        help="photos to compare float and INT8 probabilities on (env ARGOS_SAMPLE_IMAGES)",
    )
    quantize.add_argument(
        "--method",
        choices=["minmax", "entropy", "percentile"],
        default="minmax",
        help="calibration method (minmax)",
    )
    quantize.add_argument(
        "--keep-float",
        nargs="*",
        choices=["stem", "head"],
        default=["stem", "head"],
        help="regions left in float: stem (up to the first convolutions), head (the global "
        "pooling and after); default both",
    )
    quantize.add_argument(
        "--keep-float-layers",
        nargs="+",
        type=_regex,
        default=[],
        metavar="REGEX",
        help="also leave in float every node whose name, or the name of one of its weights, "
        "matches one of these regular expressions (e.g. 'block_1[1-6]_project')",
    )
    quantize.add_argument(
        "--reduce-range",
        action="store_true",
        help="7-bit weights: for CPUs with AVX2 but no VNNI, whose 8-bit kernels can saturate",
    )
    quantize.add_argument(
        "--min-agreement",
        type=float,
        default=0.97,
        help="least top-1 agreement with the float model (0.97)",
    )
    quantize.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=0.003,
        help="largest accuracy loss on labelled images (0.003: 0.3 points)",
    )

    preview = commands.add_parser(
        "preview", help="write a PNG grid of augmented training images for a config"
    )
    _add_config(preview)
    preview.add_argument("--out", type=Path, required=True, help="PNG file to write")
    preview.add_argument("--images", type=int, default=4, help="images to show (rows)")
    preview.add_argument("--variants", type=int, default=5, help="augmentations per image")
    return parser


def _default_model(args: argparse.Namespace) -> int:
    from service.settings import DEFAULT_MODEL
    from training import store

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


def _train(args: argparse.Namespace) -> int:
    from training.cv import card_summary
    from training.train import train

    config = config_from_args(args)
    summary = card_summary(args.cross_validation, config) if args.cross_validation else None
    run = train(config, args.out, register=not args.no_register, cross_validation=summary)
    card = run.card
    print(
        f"exported {card.tag} to {run.out_dir}: test accuracy {card.metrics['accuracy']:.4f} "
        f"on {card.metrics['images']} images, parity max |Δp| {card.parity.max_abs_diff:.2e}"
    )
    if run.tag is not None:
        print(f"registered {run.tag} in the BentoML store")
    return 0


def _cv(args: argparse.Namespace, argv: list[str]) -> int:
    from training.cv import cross_validate

    command = " ".join(["python -m training", *argv])
    result = cross_validate(config_from_args(args), args.folds, args.out, command=command)
    low, high = result.interval
    print(
        f"cross-validated accuracy {result.accuracy:.2%} (95 % interval {low:.2%} to "
        f"{high:.2%}) over {args.folds} folds; reports in {result.out_dir}"
    )
    return 0


def _door_eval(args: argparse.Namespace) -> int:
    from clients.petdoor.policy import load_policy
    from service.card import verify_artifact
    from service.settings import DEFAULT_MODEL
    from training import store
    from training.data import skip_positions
    from training.door import admitted_files, door_outcomes, outcomes_from_predictions

    model = args.model or f"{DEFAULT_MODEL}:latest"
    model_dir = Path(model) if Path(model).is_dir() else store.artifact_path(model)
    policy = load_policy(args.policy).model_copy(update={"debounce_frames": args.debounce_frames})
    print(f"{model_dir}, {args.policy.name}, debounce_frames {policy.debounce_frames}:")
    if args.predictions is not None:
        outcomes = outcomes_from_predictions(args.predictions, verify_artifact(model_dir), policy)
    elif args.others is not None:
        files = [path for path in sorted(args.others.iterdir()) if path.is_file()]
        skipped = skip_positions(args.skip)
        kept = [path for position, path in enumerate(files) if position not in skipped]
        outcomes = {args.others.name: admitted_files(model_dir, policy, kept)}
    else:
        outcomes = door_outcomes(model_dir, policy, args.data)
    for name, outcome in outcomes.items():
        admitted = len(outcome.admitted)
        line = f"  {name}: {admitted}/{outcome.images} open the door ({outcome.rate:.1%})"
        if outcome.unknown:
            share = len(outcome.unknown) / outcome.images
            line += f"; {len(outcome.unknown)} answered unknown ({share:.1%})"
        print(line)
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from service.card import verify_artifact
    from service.settings import DEFAULT_MODEL
    from training import store
    from training.calibration import (
        cross_validation_folds,
        photos,
        read_data,
        split_photos,
        split_training_data,
    )
    from training.quantize import Bounds, QuantizationRefused, Recipe, quantize

    model = args.model or f"{DEFAULT_MODEL}:latest"
    model_dir = Path(model) if Path(model).is_dir() else store.artifact_path(model)
    card = verify_artifact(model_dir)
    folds = None
    try:
        if args.calibration is not None:
            if args.cross_validation is not None:
                raise ValueError("--cross-validation judges on a trained model's own data")
            split = split_photos(
                args.calibration, card.preprocessing, args.calibration_images, args.seed
            )
        else:
            config, images = read_data(card, args.data)
            split = split_training_data(config, images, args.calibration_images, args.seed)
            if args.cross_validation is not None:
                folds = cross_validation_folds(
                    args.cross_validation, card, images, args.calibration_images, args.seed
                )
    except ValueError as error:
        print(f"cannot quantize {card.tag}: {error}", file=sys.stderr)
        return 2
    calibration, judged = split
    recipe = Recipe(
        method=args.method,
        keep_float=tuple(args.keep_float),
        keep_float_layers=tuple(args.keep_float_layers),
        reduce_range=args.reduce_range,
    )
    bounds = Bounds(min_agreement=args.min_agreement, max_accuracy_drop=args.max_accuracy_drop)
    sample = photos(args.parity_images, card.preprocessing)
    try:
        variant, out_dir = quantize(
            model_dir,
            args.out,
            calibration,
            judged,
            sample,
            recipe=recipe,
            bounds=bounds,
            folds=folds,
        )
    except QuantizationRefused as refusal:
        print(f"refused {card.name}-int8, not registered: {refusal}", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"cannot quantize {card.tag}: {error}", file=sys.stderr)
        return 2
    q = variant.quantization
    line = f"exported {variant.tag} to {out_dir}: top-1 agreement {q.top1_agreement:.2%}"
    if q.accuracy is not None:
        line += (
            f", accuracy {q.accuracy:.2%} vs float {q.float_accuracy:.2%} "
            f"({100 * q.accuracy_delta:+.2f} points)"
        )
    where = "out-of-fold images" if folds is not None else "images"
    speed = q.speed
    print(
        f"{line} on {q.judged_images} {where}; {speed.quantized_core_ms:.2f} vs "
        f"{speed.float_core_ms:.2f} core-ms per image ({speed.speedup:.2f}x, {speed.cpu})"
    )
    if not args.no_register:
        print(f"registered {store.register(out_dir)} in the BentoML store")
    return 0


def _preview(args: argparse.Namespace) -> int:
    from training.preview import preview

    print(f"wrote {preview(config_from_args(args), args.out, args.images, args.variants)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if getattr(args, "keras_cache", None) is not None:
        use_keras_cache(args.keras_cache)
    if args.command == "cv":
        return _cv(args, argv)
    handlers = {
        "default-model": _default_model,
        "train": _train,
        "door-eval": _door_eval,
        "preview": _preview,
        "quantize": _quantize,
    }
    return handlers[args.command](args)
