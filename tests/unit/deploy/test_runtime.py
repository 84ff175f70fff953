# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""EdgeModel: same results as anomalib's OpenVINOInferencer; sizes, batches, sources, overlays, errors."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalib_nfplus.deploy import EdgeModel, iter_sources, overlay_heatmap, read_rgb
from anomalib_nfplus.deploy.infer import batched, run_inference

from .conftest import build_ir


def test_identical_to_openvino_inferencer(tiny_ir, images, tmp_path, monkeypatch):
    from anomalib.deploy import OpenVINOInferencer

    monkeypatch.chdir(tmp_path)  # the inferencer writes ./openvino_cache
    reference = OpenVINOInferencer(tiny_ir, device="CPU", config={"INFERENCE_PRECISION_HINT": "f32"})
    edge = EdgeModel(tiny_ir, config={"INFERENCE_PRECISION_HINT": "f32"})
    for path in sorted(images.rglob("*.png")):
        expected = reference.predict(path)
        got = edge.predict(path)
        assert got.score == float(np.asarray(expected.pred_score).reshape(-1)[0])
        assert got.label == bool(np.asarray(expected.pred_label).reshape(-1)[0])
        assert np.array_equal(got.anomaly_map, np.squeeze(expected.anomaly_map))


def test_reads_like_anomalib(images):
    from anomalib.data.utils import read_image

    for path in images.rglob("*.png"):
        assert np.array_equal(read_rgb(path), read_image(path).astype(np.float32))


def test_values_and_labels(tiny_ir, images):
    edge = EdgeModel(tiny_ir)
    bright = edge.predict(images / "c.png")
    assert bright.label
    assert bright.score == pytest.approx(250 / 255, abs=1e-6)
    dark = edge.predict(images / "a.png")
    assert not dark.label
    assert dark.anomaly_map.shape == (16, 20)


def test_static_model_resizes_other_sizes_and_grayscale(tiny_ir):
    edge = EdgeModel(tiny_ir)
    assert edge.input_size == (16, 20)
    out = edge.predict(np.full((64, 80), 128, dtype=np.uint8))
    assert out.anomaly_map.shape == (16, 20)
    assert out.score == pytest.approx(128 / 255, abs=1e-5)


def test_dynamic_model_keeps_the_size(tmp_path):
    edge = EdgeModel(build_ir(tmp_path / "dyn.xml", None))
    assert edge.input_size is None
    assert edge.predict(np.zeros((10, 12, 3), dtype=np.uint8)).anomaly_map.shape == (10, 12)


def test_batch_equals_single(tiny_ir, images):
    edge = EdgeModel(tiny_ir)
    frames = list(iter_sources(images))
    together = edge.predict_batch([f.image for f in frames])
    alone = [edge.predict(f.image) for f in frames]
    assert [p.score for p in together] == [p.score for p in alone]


def test_sources_folder_file_video_and_errors(images, tmp_path):
    import cv2

    assert [f.name.split("/")[-1] for f in iter_sources(images)] == ["a.png", "c.png", "b.png"]
    assert len(list(iter_sources(images / "a.png"))) == 1
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (20, 16))
    for value in (10, 200, 90):
        writer.write(np.full((16, 20, 3), value, dtype=np.uint8))
    writer.release()
    frames = list(iter_sources(video))
    assert [f.name for f in frames] == ["clip.avi#0", "clip.avi#1", "clip.avi#2"]
    assert frames[1].image.mean() > frames[0].image.mean()
    assert len(list(iter_sources(video, max_frames=2))) == 2
    with pytest.raises(FileNotFoundError, match="does not exist"):
        iter_sources(tmp_path / "nothing.txt")  # raises at the call, before any frame is asked for
    (tmp_path / "nothing.txt").write_text("not an image")
    with pytest.raises(FileNotFoundError, match="not an image"):
        iter_sources(tmp_path / "nothing.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No images"):
        list(iter_sources(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="camera97"):
        list(iter_sources("97"))


def test_batched_groups_equal_shapes():
    from anomalib_nfplus.deploy import Frame

    frames = [Frame(str(i), np.zeros(shape)) for i, shape in enumerate([(2, 2, 3)] * 3 + [(4, 4, 3)])]
    assert [len(b) for b in batched(frames, 2)] == [2, 1, 1]


def test_run_inference_prints_json_and_writes_overlays(tiny_ir, images, tmp_path):
    stream = io.StringIO()
    results = run_inference(EdgeModel(tiny_ir), str(images), tmp_path / "out", batch_size=2, stream=stream)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(records) == len(results) == 3
    assert {r["label"] for r in records} == {"normal", "anomalous"}
    overlay = Image.open(records[0]["overlay"])
    assert overlay.size == (20, 16)
    overlays = sorted(Path(r["overlay"]).relative_to(tmp_path / "out").as_posix() for r in records)
    assert overlays == ["a_overlay.png", "c_overlay.png", "sub/b_overlay.png"]


def test_overlays_of_equal_names_in_subfolders_do_not_overwrite_each_other(tiny_ir, tmp_path):
    for defect in ("good", "scratch"):
        (tmp_path / "test" / defect).mkdir(parents=True)
        Image.fromarray(np.zeros((16, 20, 3), dtype=np.uint8)).save(tmp_path / "test" / defect / "000.png")
    run_inference(EdgeModel(tiny_ir), str(tmp_path / "test"), tmp_path / "out", stream=io.StringIO())
    records = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png"))
    assert records == ["good/000_overlay.png", "scratch/000_overlay.png"]


def test_overlay_colours_follow_the_map():
    image = np.zeros((4, 4, 3), dtype=np.float32)
    amap = np.zeros((4, 4), dtype=np.float32)
    amap[:, 2:] = 1.0
    pixels = np.asarray(overlay_heatmap(image, amap, alpha=1.0))
    assert pixels[0, 0, 2] > pixels[0, 0, 0]  # low: blue
    assert pixels[0, 3, 0] > pixels[0, 3, 2]  # high: red


def test_errors_name_the_fix(tmp_path, tiny_ir):
    with pytest.raises(FileNotFoundError, match="anomalib export"):
        EdgeModel(tmp_path / "missing.xml")
    with pytest.raises(ValueError, match="not available"):
        EdgeModel(tiny_ir, device="NPU_THAT_DOES_NOT_EXIST")
    with pytest.raises(ValueError, match="batch-size"):
        run_inference(EdgeModel(tiny_ir), str(tiny_ir), batch_size=0)
    with pytest.raises(ValueError, match="image, got shape"):
        EdgeModel(tiny_ir).predict(np.zeros((2, 3, 4, 5)))


def _hint(edge: EdgeModel) -> str:
    return edge.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()


def _native_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_float32_by_default_and_lower_precision_on_request(tiny_ir):
    """OpenVINO's CPU default is bf16 on AVX512-BF16/AMX CPUs; the runtime must not inherit it silently."""
    assert _hint(EdgeModel(tiny_ir)) == "f32"
    assert _hint(EdgeModel(tiny_ir, precision="bf16")) == ("bf16" if _native_bf16() else "f32")
    assert _hint(EdgeModel(tiny_ir, precision="bf16", config={"INFERENCE_PRECISION_HINT": "f32"})) == "f32"
    with pytest.raises(ValueError, match="precision must be one of"):
        EdgeModel(tiny_ir, precision="fp32")


def test_cli_precision_flag_reaches_the_compiled_model(tiny_ir, images, monkeypatch):
    from anomalib_nfplus import cli
    from anomalib_nfplus.deploy import runtime

    built: list[EdgeModel] = []

    class Recording(runtime.EdgeModel):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(runtime, "EdgeModel", Recording)
    image = str(images / "a.png")
    assert cli.main(["infer", "--model", str(tiny_ir), "--input", image]) == 0
    assert cli.main(["infer", "--model", str(tiny_ir), "--input", image, "--precision", "bf16"]) == 0
    assert [_hint(model) for model in built] == ["f32", "bf16" if _native_bf16() else "f32"]
