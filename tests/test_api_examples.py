"""The Python examples of the docs (```python blocks) run as written, each as a script in a fresh folder."""
import os
import re
import subprocess
import sys

import pytest

from test_docs import PAGES, rel, split_page

pytestmark = pytest.mark.slow  # trains models or starts interpreters

# docs/reference.md's examples read a study's stores: tests/test_reference.py runs them on copies of them.
EXAMPLES = [block for page in PAGES if page.name != "reference.md" for block in split_page(page)[1]
            if block.lang == "python"]
# What each example prints, as a pattern: the test fails on an example it does not know.
PRINTS = {"docs/training.md": r"run [0-9a-f]{32} in .*outputs/from_python: fid_best \d+\.\d",
          "docs/sweeps.md": r"trial 0: \d+\.\d with \{'optimizer': "}


@pytest.mark.parametrize("block", EXAMPLES, ids=lambda b: f"{rel(b.page)}:{b.line}")
def test_python_examples_run(block, tmp_path):
    (tmp_path / "example.py").write_text("\n".join(block.lines) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(PRINTS[rel(block.page)], done.stdout), done.stdout[-2000:]


def test_the_examples_are_found():
    assert sorted(rel(b.page) for b in EXAMPLES) == sorted(PRINTS)
