# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""``anomalib_nfplus.flows`` imports and runs with torch alone: anomalib, lightning, timm, openvino, nncf blocked."""

import subprocess
import sys
import textwrap

BLOCKED = ("anomalib", "lightning", "timm", "openvino", "nncf")

SCRIPT = textwrap.dedent(
    f"""
    import sys

    BLOCKED = {set(BLOCKED)!r}

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked: {{name}}")
            return None

    sys.meta_path.insert(0, Blocker())
    import torch
    from anomalib_nfplus.flows import (
        FlowDensity, HierarchicalGaussianMixture, PositionalFlows, StandardNormal, allinone_flow, differnet_flow,
    )

    density = FlowDensity(differnet_flow(6, n_blocks=1, hidden=8, depth=1), StandardNormal(6))
    assert density.nll(torch.randn(4, 6), per_dim=True).shape == (4,)
    hgm = HierarchicalGaussianMixture(2, 2, 8)
    levels = PositionalFlows([8], n_blocks=1, cond_dim=4)([torch.randn(2, 8, 3, 3)])
    z, log_det = levels[0]
    assert hgm.class_entropy(z.reshape(-1, 8)).shape == (18,)
    loaded = {{m.split(".")[0] for m in sys.modules}}
    assert not loaded & BLOCKED, loaded & BLOCKED
    print("ok")
    """
)


def test_flows_run_with_torch_alone():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def test_the_blocker_really_blocks():
    code = SCRIPT.replace("import torch\n", "import torch\nimport anomalib\n", 1)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0
    assert "blocked: anomalib" in result.stderr
