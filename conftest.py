# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Doctest set-up: every docstring example sees ``torch`` and starts from the same seed."""

from typing import Any

import pytest
import torch
from _pytest.doctest import DoctestItem


@pytest.fixture(autouse=True)
def _doctest_namespace(request: pytest.FixtureRequest, doctest_namespace: dict[str, Any]) -> None:
    """Examples may use ``torch`` without importing it and draw the same random numbers on every run."""
    if isinstance(request.node, DoctestItem):
        doctest_namespace["torch"] = torch
        torch.manual_seed(0)
