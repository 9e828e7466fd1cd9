"""What every committed lecture notebook promises an instructor, checked on the files themselves.

`make test` runs each lecture under nbval at the quick budget; these checks are about the
committed notebook: presented as slides, run top to bottom at the full budget, on the course's
kernel, with something nbval can fail on.
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LECTURES = sorted((ROOT / "lectures").glob("*.ipynb"))
SLIDE_TYPES = {"slide", "subslide", "fragment", "-", "skip", "notes"}


def cells(path, kind=None):
    notebook = json.loads(path.read_text())
    return [c for c in notebook["cells"] if kind is None or c["cell_type"] == kind]


def source(cell):
    return "".join(cell["source"])


def test_the_lectures_are_there_and_in_the_course_map():
    assert len(LECTURES) >= 7, LECTURES
    readme = (ROOT / "README.md").read_text()
    for path in LECTURES:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), f"{path.name}: lectures are named NN_topic.ipynb"
        assert f"`lectures/{path.name}`" in readme, f"{path.name} is missing from README's course map"


@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.stem)
def test_every_cell_is_a_slide_and_the_kernel_is_the_courses(path):
    missing = [i for i, c in enumerate(cells(path)) if c.get("metadata", {}).get("slideshow", {}).get("slide_type")
               not in SLIDE_TYPES]
    assert not missing, f"{path.name}: cells {missing} have no RISE slide_type (one of {sorted(SLIDE_TYPES)})"
    kernel = json.loads(path.read_text())["metadata"].get("kernelspec", {}).get("name")
    assert kernel == "sslcourse", f"{path.name} runs on kernel {kernel!r}; `make setup` installs 'sslcourse'"


@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.stem)
def test_committed_with_the_outputs_of_one_full_run_top_to_bottom(path):
    code = cells(path, "code")
    counts = [c.get("execution_count") for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: execution counts {counts}, not one run in order"
    errors = [i for i, c in enumerate(code) for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, f"{path.name}: code cells {errors} end in an error"
    printed = "".join("".join(o.get("text", "")) for c in code for o in c.get("outputs", []))
    assert "budget: full" in printed and "QUICK" not in printed, f"{path.name} was not run at the full budget"


@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.stem)
def test_nbval_has_something_to_fail_on(path):
    code = [source(c) for c in cells(path, "code")]
    assert any(s.lstrip().startswith("# NBVAL_CHECK_OUTPUT") for s in code), \
        f"{path.name}: no `# NBVAL_CHECK_OUTPUT` cell, so nbval in lax mode compares no output"
    assert sum("assert " in s for s in code) >= 3, f"{path.name}: fewer than 3 cells assert what they show"
    assert any("pick(" in s for s in code), f"{path.name}: budgets must come from sslcourse.budget.pick"
