# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The ``anomalib-nfplus`` console command.

Sub-commands import their heavy dependencies only when they run, so ``anomalib-nfplus --help`` is instant.
``demo`` runs the plugin's main job offline; ``generate-data`` writes a synthetic multi-category dataset;
``infer`` runs an exported model without torch. Training, testing and export go through anomalib's own CLI
(``anomalib train --model HGAD ...``).
"""

import argparse
import sys
from collections.abc import Sequence

from anomalib_nfplus._catalog import MODELS
from anomalib_nfplus.data.synthetic import CATEGORY_DEFECTS  # numpy and Pillow only: --help stays fast
from anomalib_nfplus.demo import DEMO_DEFAULTS

__all__ = ["main"]

MODEL_NAMES = tuple(MODELS)
CATEGORIES = tuple(CATEGORY_DEFECTS)


def _demo(args: argparse.Namespace) -> int:
    from anomalib_nfplus.demo import print_result, run_demo

    result = run_demo(
        args.output,
        model=args.model,
        epochs=args.epochs,
        image_size=args.image_size,
        n_train=args.n_train,
        categories=tuple(args.categories),
        seed=args.seed,
    )
    print_result(result)
    return 0


def _generate_data(args: argparse.Namespace) -> int:
    from anomalib_nfplus.data.synthetic import make_mvtec_like

    root = make_mvtec_like(
        args.root,
        tuple(args.categories),
        n_train=args.n_train,
        n_test_good=args.n_test_good,
        n_test_bad=args.n_test_bad,
        image_size=args.image_size,
        seed=args.seed,
        channels=args.channels,
        overwrite=args.overwrite,
    )
    categories = ", ".join(args.categories)
    print(f"Wrote {len(args.categories)} categories ({categories}) in MVTec layout under {root}")
    print(
        f"Train one model on all of them: anomalib train --model HGAD --model.backbone tf_efficientnet_lite0 "
        f"--model.image_size {args.image_size} --data anomalib_nfplus.data.Unified --data.root {root} "
        f"--data.categories '[{categories}]' --data.image_size {args.image_size}"
    )
    return 0


def _infer(args: argparse.Namespace) -> int:
    from pathlib import Path

    from anomalib_nfplus.deploy.infer import InferenceError, run_inference
    from anomalib_nfplus.deploy.runtime import EdgeModel

    if not Path(args.model).is_file():
        print(f"anomalib-nfplus infer: model {args.model!r} not found (give the exported model.xml)", file=sys.stderr)
        return 1
    model = EdgeModel(args.model, device=args.device, precision=args.precision)
    output = Path(args.output) if args.output else None
    try:
        run_inference(model, args.input, output, batch_size=args.batch_size, max_frames=args.max_frames)
    except InferenceError as error:  # nothing scored, or an input it cannot read: one line, exit status 1
        print(error, file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``anomalib-nfplus``."""
    parser = argparse.ArgumentParser(prog="anomalib-nfplus", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="offline main job: one model for several generated categories: train, test, reload, export to OpenVINO, "
        "score with the edge runtime, PNG grid",
    )
    demo.add_argument("--output", default="results/nfplus_demo", help="folder for data, checkpoint, export, PNGs")
    demo.add_argument("--model", default="HGAD", choices=MODEL_NAMES, help="plugin model (default: unified HGAD)")
    demo.add_argument("--epochs", type=int, default=DEMO_DEFAULTS["epochs"])
    demo.add_argument("--image-size", type=int, default=DEMO_DEFAULTS["image_size"])
    demo.add_argument("--n-train", type=int, default=DEMO_DEFAULTS["n_train"], help="training images per category")
    demo.add_argument("--categories", nargs="+", default=list(CATEGORIES), choices=CATEGORIES)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    data = commands.add_parser(
        "generate-data",
        help="write a synthetic multi-category dataset with defects and masks (MVTec layout) to try models on",
    )
    data.add_argument("--root", required=True, help="dataset root; one folder per category is written under it")
    data.add_argument("--categories", nargs="+", default=list(CATEGORIES), choices=CATEGORIES)
    data.add_argument("--n-train", type=int, default=32, help="normal training images per category")
    data.add_argument("--n-test-good", type=int, default=8, help="normal test images per category")
    data.add_argument("--n-test-bad", type=int, default=4, help="test images per defect type (3 types per category)")
    data.add_argument("--image-size", type=int, default=128)
    data.add_argument("--channels", type=int, choices=(1, 3), default=3, help="3: RGB PNGs, 1: grayscale PNGs")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--overwrite", action="store_true", help="replace existing category folders")
    data.set_defaults(func=_generate_data)
    infer = commands.add_parser(
        "infer",
        help="run an exported OpenVINO model on images, a folder, a video or a camera (needs no torch)",
    )
    infer.add_argument("--model", required=True, help="exported model.xml (or .onnx)")
    infer.add_argument("--input", required=True, help="image, folder, video file, or camera index such as 0")
    infer.add_argument("--output", help="folder for heat-map overlays (none written if omitted)")
    infer.add_argument("--device", default="CPU", help="OpenVINO device: CPU, GPU, NPU, AUTO")
    infer.add_argument("--batch-size", type=int, default=1, help="images per inference call")
    infer.add_argument("--max-frames", type=int, help="stop after N images (cameras stream forever)")
    infer.add_argument(
        "--precision",
        choices=("f32", "bf16", "f16", "auto"),
        default="f32",
        help="inference precision: f32 (default, as torch), bf16/f16 (faster where native, less accurate), "
        "auto (the device's default)",
    )
    infer.set_defaults(func=_infer)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
