# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""``anomalib-nfplus infer --output``: overlay paths mirror the input and never replace each other in one run."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalib_nfplus.deploy import EdgeModel
from anomalib_nfplus.deploy.infer import OverlayPaths, run_inference


def _save(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 20, 3), value, dtype=np.uint8)).save(path)


def _run(model: Path, source: Path, output: Path) -> dict[str, Path]:
    """Input path -> overlay path, from the JSON lines."""
    stream = io.StringIO()
    run_inference(EdgeModel(model), str(source), output, stream=stream)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    return {Path(r["path"]).relative_to(source).as_posix(): Path(r["overlay"]) for r in records}


def test_names_that_flattening_would_merge_get_their_own_overlays(tiny_ir, tmp_path):
    source, output = tmp_path / "in", tmp_path / "out"
    _save(source / "a_b" / "c.png", 20)  # dark
    _save(source / "a" / "b_c.png", 240)  # bright: an overwrite would show
    overlays = _run(tiny_ir, source, output)
    assert overlays == {"a_b/c.png": output / "a_b" / "c_overlay.png", "a/b_c.png": output / "a" / "b_c_overlay.png"}
    assert sorted(p.relative_to(output).as_posix() for p in output.rglob("*.png")) == [
        "a/b_c_overlay.png",
        "a_b/c_overlay.png",
    ]
    dark = np.asarray(Image.open(overlays["a_b/c.png"]), dtype=float).mean()
    bright = np.asarray(Image.open(overlays["a/b_c.png"]), dtype=float).mean()
    assert dark < bright


def test_names_equal_but_for_suffix_stay_apart(tiny_ir, tmp_path):
    source, output = tmp_path / "in", tmp_path / "out"
    for index, name in enumerate(("x.jpg", "x.png", "x_png.png", "sub/x.png")):
        _save(source / name, 40 * index)
    overlays = _run(tiny_ir, source, output)
    names = {name: path.relative_to(output).as_posix() for name, path in overlays.items()}
    assert names == {  # sorted input order decides which one keeps the short name
        "sub/x.png": "sub/x_overlay.png",
        "x.jpg": "x_overlay.png",
        "x.png": "x_png_overlay.png",
        "x_png.png": "x_png_png_overlay.png",
    }
    assert all(path.is_file() for path in overlays.values())


def test_a_single_image_keeps_its_name(tiny_ir, tmp_path):
    _save(tmp_path / "deep" / "part 7.png", 100)
    stream = io.StringIO()
    run_inference(EdgeModel(tiny_ir), str(tmp_path / "deep" / "part 7.png"), tmp_path / "out", stream=stream)
    assert json.loads(stream.getvalue())["overlay"] == str(tmp_path / "out" / "part 7_overlay.png")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["part 7_overlay.png"]


def test_video_frames_are_numbered(tiny_ir, tmp_path):
    cv2 = pytest.importorskip("cv2")
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (20, 16))
    for value in (10, 200, 90):
        writer.write(np.full((16, 20, 3), value, dtype=np.uint8))
    writer.release()
    stream = io.StringIO()
    run_inference(EdgeModel(tiny_ir), str(video), tmp_path / "out", stream=stream)
    overlays = [Path(json.loads(line)["overlay"]).name for line in stream.getvalue().splitlines()]
    assert overlays == ["clip_0_overlay.png", "clip_1_overlay.png", "clip_2_overlay.png"]


def test_overlay_paths_of_a_camera_of_names_equal_but_for_case_and_of_a_repeated_name():
    camera = OverlayPaths(Path("out"), "0")
    assert [camera(f"camera0#{i}").as_posix() for i in (0, 1)] == [
        "out/camera0_0_overlay.png",
        "out/camera0_1_overlay.png",
    ]
    folder = OverlayPaths(Path("out"), Path(__file__).parent)  # case-insensitive disks would merge these two
    assert folder(str(Path(__file__).parent / "sub" / "Y.png")).as_posix() == "out/sub/Y_overlay.png"
    assert folder(str(Path(__file__).parent / "sub" / "y.png")).as_posix() == "out/sub/y_png_overlay.png"
    image = OverlayPaths(Path("out"), "x.png")
    assert [image("x.png").as_posix() for _ in range(4)] == [
        "out/x_overlay.png",
        "out/x_png_overlay.png",
        "out/x_png_2_overlay.png",
        "out/x_png_3_overlay.png",
    ]
