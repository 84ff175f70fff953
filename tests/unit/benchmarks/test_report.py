# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The shared result files: every recorded CSV still matches its script's columns, appends check the header."""

import csv
from pathlib import Path

import pytest

from benchmarks import ddp_throughput, edge, export_time, harness, report, run, unified

RESULTS = Path(report.__file__).parent / "results"
SCHEMAS = {
    "run": run.COLUMNS,
    "unified": unified.COLUMNS,
    "edge": edge.COLUMNS,
    "ddp_throughput": ddp_throughput.COLUMNS,
    "export_time": tuple(export_time.FIELDS),
}


@pytest.mark.parametrize("path", sorted(RESULTS.rglob("*.csv")), ids=lambda p: str(p.relative_to(RESULTS)))
def test_every_recorded_csv_has_the_columns_of_a_script(path: Path) -> None:
    with path.open(newline="") as handle:
        header = tuple(next(csv.reader(handle)))
    assert header in SCHEMAS.values(), f"{path.name}: {header}"
    assert report.read_rows(path), "a recorded file holds rows"


def test_append_writes_one_header_and_refuses_other_columns(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "r.csv"
    report.append_rows(out, [{"a": 1, "b": 2}], ("a", "b"))
    report.append_rows(out, [{"a": 3, "b": 4}], ("a", "b"))
    assert out.read_text().splitlines() == ["a,b", "1,2", "3,4"]
    with pytest.raises(ValueError, match="pass another --out"):
        report.append_rows(out, [{"a": 5}], ("a",))
    report.write_rows(out, [{"a": 9}], ("a",))
    assert report.read_rows(out) == [{"a": "9"}]


def test_markdown_lists_each_command_once(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    rows = [{"m": "x|y", "command": "c1"}, {"m": "z", "command": "c2"}, {"m": "w", "command": "c1"}]
    report.append_rows(out, rows, ("m", "command"))
    text = report.write_markdown(out, ["m"], title="T").read_text()
    assert text.startswith("# T: `r.csv`")
    assert "| x\\|y | [1] |" in text
    assert "| w | [1] |" in text
    assert "2. `c2`" in text
    assert "3. " not in text


def test_provenance_is_public_and_the_command_names_the_module() -> None:
    assert report.commit()  # a short sha, "+dirty" or "unknown"; never empty
    assert report.host().startswith("cpus=")
    assert "torch_threads" in report.host()
    assert "torch_threads" not in report.host(torch_threads=False)
    assert report.command_line("run", ["--root", "a b"]) == "python -m benchmarks.run --root 'a b'"


def test_init_args_merge_case_insensitively_in_order() -> None:
    pairs = [("HGAD", '{"a": 1, "b": 1}'), ("Cflow", '{"c": 3}'), ("hgad", '{"b": 2}')]
    assert harness.init_args_for("hgad", pairs) == {"a": 1, "b": 2}
    assert harness.init_args_for("Padim", pairs) == {}
    with pytest.raises(ValueError, match="JSON object"):
        harness.init_args_for("x", [("x", "[1]")])
