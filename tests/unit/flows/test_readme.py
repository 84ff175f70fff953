# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The example of the flows README runs and fits its data."""

import contextlib
import io
import re
from pathlib import Path

import anomalib_nfplus.flows

README = Path(anomalib_nfplus.flows.__file__).with_name("README.md")


def test_readme_example_runs_and_improves_the_likelihood():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1
    namespace: dict = {}
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(blocks[0], str(README), "exec"), namespace)
    assert namespace["after"] > namespace["before"] + 1.0
    assert output.getvalue().startswith("mean log-likelihood:")
