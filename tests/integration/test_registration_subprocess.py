# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Registration in fresh interpreters of the installed environment: the way users run ``anomalib``.

The real plugin is checked through the real ``anomalib`` console script (``--data MVTec`` only resolves when the
hook has imported the plugin). The probe model is registered by a ``.pth`` processed with ``site.addsitedir``,
which runs the same hook code path as an installed package. Every catalogue model is resolved by its short name
in a fresh ``anomalib`` process by the exports of ``test_models.py`` (``anomalib export --model <Name>``).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PLUGIN_MODELS

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
ANOMALIB = str(BIN / "anomalib")


def _run(
    cmd: list[str], cwd: Path, env_extra: dict[str, str] | None = None, timeout: int = 420
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ANOMALIB_NFPLUS_NO_AUTOLOAD"}
    env.update(env_extra or {})
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _alias_print_config(root: str) -> list[str]:
    """Arguments that parse only when the plugin's ``MVTec`` alias is registered."""
    return ["fit", "--model", "Padim", "--data", "MVTec", "--data.root", root, "--print_config"]


def _probe_cli(probe_site: Path, args: list[str]) -> list[str]:
    """``anomalib <args>`` in a fresh interpreter that has the probe's .pth processed first."""
    code = (
        "import site, sys; site.addsitedir(sys.argv[1]); sys.argv = ['anomalib', *sys.argv[2:]]; "
        "from anomalib.cli.cli import main; main()"
    )
    return [sys.executable, "-c", code, str(probe_site), *args]


def test_interpreter_start_is_cheap(tmp_path: Path) -> None:
    code = (
        "import json, sys, _anomalib_nfplus_hook as h; "
        "print(json.dumps({'torch': 'torch' in sys.modules, 'anomalib': 'anomalib' in sys.modules, "
        "'waiting': h.is_installed()}))"
    )
    out = _run([sys.executable, "-c", code], tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"torch": False, "anomalib": False, "waiting": True}
    timing = _run([sys.executable, "-X", "importtime", "-c", "pass"], tmp_path).stderr
    hook_line = next(line for line in timing.splitlines() if line.rstrip().endswith("_anomalib_nfplus_hook"))
    cumulative_us = int(hook_line.split("|")[1])
    assert cumulative_us < 50_000, hook_line  # measured ~3 ms; an eager plugin import costs ~14 s


def test_real_cli_resolves_mvtec_alias(tmp_path: Path, synthetic_root: str) -> None:
    out = _run([ANOMALIB, *_alias_print_config(synthetic_root)], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "class_path: anomalib_nfplus.MVTec" in out.stdout


def test_opt_out_variable_disables_registration(tmp_path: Path, synthetic_root: str) -> None:
    args = _alias_print_config(synthetic_root)
    out = _run([ANOMALIB, *args], tmp_path, env_extra={"ANOMALIB_NFPLUS_NO_AUTOLOAD": "1"})
    assert out.returncode != 0
    assert "MVTec" in out.stderr
    full_path = [ANOMALIB, *[a if a != "MVTec" else "anomalib_nfplus.MVTec" for a in args]]
    out = _run(full_path, tmp_path, env_extra={"ANOMALIB_NFPLUS_NO_AUTOLOAD": "1"})
    assert out.returncode == 0, out.stderr[-3000:]


def test_probe_model_help(tmp_path: Path, probe_site: Path) -> None:
    out = _run(_probe_cli(probe_site, ["fit", "--model.help", "NfplusProbe"]), tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "--model.pool" in out.stdout


def test_probe_train_and_export_by_short_name(tmp_path: Path, probe_site: Path, synthetic_root: str) -> None:
    """train (fit + test) and export through the CLI with the short model name and ``--data MVTec``."""
    common = ["--model", "NfplusProbe", "--default_root_dir", str(tmp_path / "results")]
    out = _run(
        _probe_cli(
            probe_site,
            [
                "train",
                *common,
                "--data",
                "MVTec",
                "--data.root",
                synthetic_root,
                "--data.category",
                "stripes",
                "--data.num_workers",
                "0",
                "--trainer.max_epochs",
                "1",
            ],
        ),
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "image_AUROC" in out.stdout + out.stderr
    ckpts = list((tmp_path / "results").rglob("*.ckpt"))
    assert ckpts, "no checkpoint written"
    assert "/MVTecAD/" in str(ckpts[0])  # alias writes where --data MVTecAD would
    out = _run(
        _probe_cli(
            probe_site,
            ["export", *common, "--ckpt_path", str(ckpts[0]), "--export_type", "openvino", "--input_size", "[64,64]"],
        ),
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert list((tmp_path / "results").rglob("openvino/model.xml"))


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the plugin installed from its wheel (a regular, non-editable install)."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is needed to build and install the wheel")
    root = tmp_path_factory.mktemp("wheel_env")
    project = Path(__file__).resolve().parents[2]
    steps = [
        [uv, "build", "--wheel", "-q", "-o", str(root / "dist"), str(project)],
        [uv, "venv", "-q", str(root / "venv"), "--python", sys.executable],
        [
            uv,
            "export",
            "-q",
            "--frozen",
            "--no-dev",
            "--no-emit-project",
            "--no-hashes",
            "--project",
            str(project),
            "-o",
            str(root / "requirements.txt"),
        ],
    ]
    for step in steps:
        subprocess.run(step, check=True, capture_output=True, timeout=300)
    wheel = next((root / "dist").glob("*.whl"))
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "-q",
            "--python",
            str(root / "venv" / "bin" / "python"),
            "-r",
            str(root / "requirements.txt"),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return root / "venv" / "bin"


def test_wheel_install_registers_without_import(tmp_path: Path, wheel_env: Path, synthetic_root: str) -> None:
    site_files = {p.name for p in (wheel_env.parent / "lib").glob("python*/site-packages/*anomalib_nfplus*")}
    assert {"_anomalib_nfplus_hook.py", "anomalib_nfplus.pth", "anomalib_nfplus.start"} <= site_files
    out = _run([str(wheel_env / "anomalib"), *_alias_print_config(synthetic_root)], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "class_path: anomalib_nfplus.MVTec" in out.stdout
    code = "import anomalib_nfplus; print(anomalib_nfplus.__file__)"
    location = _run([str(wheel_env / "python"), "-c", code], tmp_path).stdout
    assert str(wheel_env.parent) in location  # the wheel's copy, not the source tree


@pytest.mark.parametrize("name", PLUGIN_MODELS)
def test_wheel_install_resolves_plugin_model(tmp_path: Path, wheel_env: Path, name: str) -> None:
    out = _run([str(wheel_env / "anomalib"), "fit", "--model", name, "--print_config"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]


def test_broken_plugin_target_warns_but_never_breaks_anomalib(tmp_path: Path) -> None:
    code = (
        "import _anomalib_nfplus_hook as h; h.install('no_such_plugin_module_xyz'); "
        "import anomalib.models; print(len(anomalib.models.list_models()) > 0)"
    )
    out = _run([sys.executable, "-W", "always::RuntimeWarning", "-c", code], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("True")
    assert "auto-registration of 'no_such_plugin_module_xyz' failed" in out.stderr
    assert "--model anomalib_nfplus.HGAD" in out.stderr  # the message names the fallback


def test_model_imported_before_anomalib_is_still_exposed(tmp_path: Path, probe_site: Path) -> None:
    """Importing a model module first fires the hook half-way through that import; registration must still finish."""
    code = (
        "import site, sys, warnings; warnings.simplefilter('error', RuntimeWarning); site.addsitedir(sys.argv[1]); "
        "from nfplus_probe import NfplusProbe; from anomalib.models import get_model; "
        "print(type(get_model({'class_path': 'NfplusProbe'})).__name__)"
    )
    out = _run([sys.executable, "-c", code, str(probe_site)], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("NfplusProbe")
    assert "auto-registration" not in out.stderr


def test_start_file_names_a_callable() -> None:
    """PEP 829 ``.start`` entry: ``module:callable`` that resolves and takes no argument."""
    import pkgutil

    line = (Path(__file__).resolve().parents[2] / "src" / "anomalib_nfplus.start").read_text().strip()
    install = pkgutil.resolve_name(line)
    assert callable(install)
    assert line == "_anomalib_nfplus_hook:install"
