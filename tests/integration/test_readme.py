# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Every command in README.md runs as written, offline, on small generated data.

The commands are read from the README's ``bash`` and ``python`` blocks, so a changed README is tested as it reads.
Only sizes shrink: generated data gets fewer and smaller images and training one epoch at 128 px (flags appended
after the README's own, which jsonargparse lets override). Commands that need MVTec AD and the timm hub are
parsed and validated with ``--print_config`` instead of run. ``uv run anomalib-nfplus demo`` has its own test
(``test_demo.py``, reduced size) and ``uv run pytest`` is this suite.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
README = PROJECT / "README.md"
BIN = Path(sys.executable).parent
SMALL = {
    "generate-data": ["--n-train", "8", "--n-test-good", "2", "--n-test-bad", "1", "--image-size", "64"],
    "train": ["--trainer.max_epochs", "1", "--model.init_args.image_size", "128"],
}
TESTED_ELSEWHERE = ("anomalib-nfplus demo", "pytest")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def _commands() -> list[str]:
    lines = [line for block in _blocks("bash") for line in block.replace("\\\n", " ").splitlines()]
    commands = [line.split("#")[0].strip() for line in lines]
    return [c for c in commands if c and not any(c.removeprefix("uv run ").startswith(t) for t in TESTED_ELSEWHERE)]


def _argv(command: str) -> list[str]:
    argv = shlex.split(command.removeprefix("uv run "))
    argv[0] = str(BIN / argv[0])
    if argv[1:2] == ["generate-data"]:
        argv += SMALL["generate-data"]
    if argv[1:2] == ["train"]:
        argv += SMALL["train"]
        if "Unified" in command:
            argv += ["--data.image_size", "128"]
        if "--data.root" not in command or "MVTecAD" in command:  # MVTec AD and hub backbones: parse only
            argv += ["--print_config"]
    return argv


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty folder where ``configs/`` is the project's, as in a clone."""
    root = tmp_path_factory.mktemp("readme")
    (root / "configs").symlink_to(PROJECT / "configs")
    return root


def test_the_readme_has_the_user_commands() -> None:
    names = {shlex.split(c.removeprefix("uv run "))[0:2][-1] for c in _commands()}
    assert {"generate-data", "train", "export", "infer"} <= names
    assert len(_blocks("python")) == 1


@pytest.mark.slow
def test_readme_commands_run_in_order(workdir: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for command in _commands():
        run = subprocess.run(_argv(command), cwd=workdir, capture_output=True, text=True, timeout=900, env=env)
        assert run.returncode == 0, f"{command}\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    assert list((workdir / "results" / "cli" / "overlays").glob("*.png")), "infer wrote no overlay"


@pytest.mark.slow
def test_readme_quick_start_runs(tmp_path: Path) -> None:
    (code,) = _blocks("python")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "anomalous:" in run.stdout
    assert (tmp_path / "results" / "quickstart").is_dir()
