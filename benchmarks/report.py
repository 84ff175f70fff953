# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Result files of every benchmark: CSV rows, the markdown table beside them, and the provenance of each row.

Each script owns its column tuple (recorded CSVs keep their schema); this module only writes and reads them, so
every results file gets the same header check, the same markdown layout and the same ``commit``/``host`` values.
"""

import csv
import os
import shlex
import subprocess
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = [
    "append_rows",
    "command_line",
    "commit",
    "host",
    "now",
    "read_rows",
    "write_markdown",
    "write_rows",
]

REPO = Path(__file__).resolve().parents[1]
#: What decides a row's numbers: the package, the harness and the dependency pins (not the result files).
CODE_PATHS = (":/src", ":/benchmarks/*.py", ":/pyproject.toml", ":/uv.lock")


def commit() -> str:
    """Short commit of this checkout, ``+dirty`` when the code that ran differs from it; ``unknown`` without git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = ["git", "status", "--porcelain", "--", *CODE_PATHS]
        dirty = subprocess.run(status, cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha


def host(accelerator: str = "cpu", *, torch_threads: bool = True) -> str:
    """CPU count, torch threads (left out where every process has its own) and the device that ran the row."""
    import torch

    parts = [f"cpus={os.cpu_count()}"]
    if torch_threads:
        device = torch.cuda.get_device_name(0) if accelerator != "cpu" and torch.cuda.is_available() else "cpu"
        parts += [f"torch_threads={torch.get_num_threads()}", f"device={device}"]
    return " ".join(parts)


def now() -> str:
    """Local time with its offset, to the second (the ``date`` column)."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """The command that produced a row, as a user would type it: ``python -m benchmarks.<module> ...``."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    return f"python -m benchmarks.{module} {shlex.join(args)}".rstrip()


def _header(path: Path) -> list[str]:
    with path.open(newline="") as handle:
        return next(csv.reader(handle), [])


def append_rows(path: Path, rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> None:
    """Append rows, writing the header for a new file; refuse a file with other columns (pass another ``--out``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    if not new and tuple(_header(path)) != tuple(columns):
        msg = f"{path} has columns {_header(path)}, expected {list(columns)}; pass another --out."
        raise ValueError(msg)
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        if new:
            writer.writeheader()
        writer.writerows(rows)


def write_rows(path: Path, rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> None:
    """Replace ``path`` with these rows (for scripts whose file holds exactly one run)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def read_rows(path: Path) -> list[dict[str, str]]:
    """All rows of a results CSV (empty list when it does not exist)."""
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def write_markdown(path: Path, columns: Sequence[str], title: str) -> Path:
    """Regenerate ``<csv stem>.md`` from all rows: one table line per row, each command listed once, numbered."""
    rows = read_rows(path)
    commands = list(dict.fromkeys(row.get("command", "") for row in rows))
    lines = [f"# {title}: `{path.name}`", "", "| " + " | ".join([*columns, "cmd"]) + " |"]
    lines.append("|" + "---|" * (len(columns) + 1))
    for row in rows:
        cells = [row.get(c, "").replace("|", "\\|") for c in columns]
        lines.append("| " + " | ".join([*cells, f"[{commands.index(row.get('command', '')) + 1}]"]) + " |")
    lines += ["", "Commands:", ""] + [f"{i}. `{cmd}`" for i, cmd in enumerate(commands, start=1)]
    markdown = path.with_suffix(".md")
    markdown.write_text("\n".join(lines) + "\n")
    return markdown
