# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""``anomalib-nfplus infer`` keeps going past unreadable files, fails when it scored nothing, and exits cleanly when
its output pipe closes."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalib_nfplus.deploy import EdgeModel, iter_sources
from anomalib_nfplus.deploy.infer import InferenceError, run_inference


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """Two good images, and files with image suffixes that are not decodable images."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name, value in (("a.png", 10), ("z.png", 240)):
        Image.fromarray(np.full((16, 20, 3), value, dtype=np.uint8)).save(folder / name)
    good = (folder / "a.png").read_bytes()
    (folder / "b_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (folder / "c_truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "d_text.jpg").write_text("not an image")
    (folder / "e_folder.png").mkdir()  # a directory with an image suffix is not a file to read
    (folder / "notes.txt").write_text("files without an image suffix are not read")
    return folder


BAD = ("b_corrupt.png", "c_truncated.png", "d_text.jpg")


def test_unreadable_files_are_skipped_with_one_line_each(tiny_ir, mixed_folder, capsys):
    stream = io.StringIO()
    results = run_inference(EdgeModel(tiny_ir), str(mixed_folder), batch_size=2, stream=stream)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [Path(r["path"]).name for r in records] == ["a.png", "z.png"]
    assert len(results) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == len(BAD)
    for line, name in zip(lines, BAD, strict=True):
        assert line.startswith("anomalib-nfplus infer: skipped ")
        assert name in line


def test_an_unreadable_single_file_fails_after_its_skip_line(tiny_ir, mixed_folder, capsys):
    stream = io.StringIO()
    with pytest.raises(InferenceError, match="its only image was skipped as unreadable") as raised:
        run_inference(EdgeModel(tiny_ir), str(mixed_folder / "b_corrupt.png"), stream=stream)
    assert str(raised.value).startswith("anomalib-nfplus infer: nothing scored")
    assert stream.getvalue() == ""
    assert "b_corrupt.png" in capsys.readouterr().err


def test_a_folder_of_unreadable_files_fails_with_their_number(tiny_ir, mixed_folder, tmp_path):
    for name in ("a.png", "z.png"):
        (mixed_folder / name).unlink()
    with pytest.raises(InferenceError, match=f"all {len(BAD)} images were skipped as unreadable"):
        run_inference(EdgeModel(tiny_ir), str(mixed_folder), stream=io.StringIO())


def test_max_frames_zero_asks_for_nothing_and_is_not_a_failure(tiny_ir, mixed_folder):
    stream = io.StringIO()
    assert run_inference(EdgeModel(tiny_ir), str(mixed_folder), max_frames=0, stream=stream) == []
    assert stream.getvalue() == ""


def _cli(model: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "anomalib_nfplus.cli", "infer", "--model", str(model), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_cli_exits_1_when_the_only_image_is_unreadable(tiny_ir, mixed_folder):
    result = _cli(tiny_ir, "--input", str(mixed_folder / "b_corrupt.png"))
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    skip, failure = result.stderr.splitlines()
    assert skip.startswith("anomalib-nfplus infer: skipped ")
    assert failure == (
        f"anomalib-nfplus infer: nothing scored from {str(mixed_folder / 'b_corrupt.png')!r}: "
        "its only image was skipped as unreadable."
    )


def test_cli_exits_0_when_one_image_of_a_folder_is_scored(tiny_ir, tmp_path):
    folder = tmp_path / "half"
    folder.mkdir()
    Image.fromarray(np.full((16, 20, 3), 10, dtype=np.uint8)).save(folder / "good.png")
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    result = _cli(tiny_ir, "--input", str(folder))
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert Path(record["path"]).name == "good.png"
    (skip,) = result.stderr.splitlines()
    assert skip.startswith("anomalib-nfplus infer: skipped ")
    assert "bad.png" in skip


def test_cli_names_a_missing_input_in_one_line(tiny_ir, tmp_path):
    missing = tmp_path / "no_such_folder"
    result = _cli(tiny_ir, "--input", str(missing), "--output", str(tmp_path / "out"))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"anomalib-nfplus infer: Input {str(missing)!r} does not exist (expected an image, a folder of images, "
        "a video file or a camera index)."
    ]
    assert not (tmp_path / "out").exists()  # nothing is created for a run that cannot start


def test_sources_report_skips_to_the_callback(mixed_folder):
    skipped: list[str] = []
    frames = list(iter_sources(mixed_folder, on_skip=skipped.append))
    assert [Path(f.name).name for f in frames] == ["a.png", "z.png"]
    assert [next(name for name in BAD if name in line) for line in skipped] == list(BAD)
    assert len(list(iter_sources(mixed_folder, max_frames=1, on_skip=skipped.append))) == 1


def test_a_closed_pipe_stops_inference_quietly(tiny_ir, images):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    with open(write_end, "w", encoding="utf-8") as stream:
        assert run_inference(EdgeModel(tiny_ir), str(images), stream=stream) == []
        stream.write("the descriptor now points at os.devnull\n")
        stream.flush()  # what Python does at exit: must not raise again


def test_cli_exits_cleanly_when_the_reader_closes_the_pipe(tiny_ir, images):
    process = subprocess.Popen(
        [sys.executable, "-m", "anomalib_nfplus.cli", "infer", "--model", str(tiny_ir), "--input", str(images)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.stdout.close()  # like `| head -0`: every write meets a closed pipe
    stderr = process.stderr.read()
    process.stderr.close()
    assert process.wait(timeout=120) == 0, stderr
    assert "Traceback" not in stderr
    assert "BrokenPipeError" not in stderr


def test_cli_names_a_missing_model_in_one_line(mixed_folder, tmp_path):
    result = _cli(tmp_path / "model.xml", "--input", str(mixed_folder))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"anomalib-nfplus infer: model {str(tmp_path / 'model.xml')!r} not found (give the exported model.xml)"
    ]
