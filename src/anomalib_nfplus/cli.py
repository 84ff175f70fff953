# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The ``anomalib-nfplus`` console command.

Sub-commands import their heavy dependencies only when they run, so ``anomalib-nfplus --help`` is instant.
Training, testing and export of single models go through anomalib's own CLI (``anomalib train --model ...``).
"""

import argparse
from collections.abc import Sequence

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from anomalib_nfplus.demo import print_result, run_demo

    print_result(
        run_demo(args.output, model=args.model, epochs=args.epochs, image_size=args.image_size, seed=args.seed)
    )
    return 0


def _infer(args: argparse.Namespace) -> int:
    from pathlib import Path

    from anomalib_nfplus.deploy.infer import run_inference
    from anomalib_nfplus.deploy.runtime import EdgeModel

    model = EdgeModel(args.model, device=args.device, precision=args.precision)
    output = Path(args.output) if args.output else None
    run_inference(model, args.input, output, batch_size=args.batch_size, max_frames=args.max_frames)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``anomalib-nfplus``."""
    parser = argparse.ArgumentParser(prog="anomalib-nfplus", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="offline end-to-end job: generate data, train, test, export to OpenVINO, run the exported model",
    )
    demo.add_argument("--output", default="results/nfplus_demo", help="folder for data, checkpoints and export")
    demo.add_argument("--model", default="Cflow", help="model name (anomalib built-in or plugin model)")
    demo.add_argument("--epochs", type=int, default=1)
    demo.add_argument("--image-size", type=int, default=128)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
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
