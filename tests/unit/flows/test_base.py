# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""is_tracing: false when eager, true under TorchScript tracing and torch.export."""

import pytest
import torch

from anomalib_nfplus.flows import is_tracing

SEEN: list[bool] = []


class _Records(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        SEEN.append(is_tracing())
        return x + 1


@pytest.mark.parametrize(
    "trace",
    [
        lambda m, x: torch.jit.trace(m, x, check_trace=False),
        lambda m, x: torch.export.export(m, x, strict=False),
    ],
    ids=["jit_trace", "export_non_strict"],  # strict export would also pass, but warms up dynamo for ~13 s
)
def test_is_tracing(trace):
    SEEN.clear()
    _Records()(torch.zeros(2))
    assert SEEN == [False]
    SEEN.clear()
    trace(_Records(), (torch.zeros(2),))
    assert SEEN
    assert all(SEEN)
