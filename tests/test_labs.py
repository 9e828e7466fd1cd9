"""The lab pipeline end to end: build, grade, release, and a student's run.

One module-scoped build serves every test. The submissions under tests/submissions/
are graded in a single `tools/labs.py grade` run, as `make grade` would, together with
the solution (full marks) and the untouched student notebook (zero).
"""
import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import labs  # noqa: E402  (tools/labs.py)

LAB = "05_contrastive_losses"
SUBMISSIONS = Path(__file__).resolve().parent / "submissions"
QUESTIONS = ["q1", "q2", "q3", "q4", "q5", "q6"]
FULL = {"q1": 2, "q2": 3, "q3": 3, "q4": 3, "q5": 2, "q6": 3}
ENV = {**os.environ, "SSLCOURSE_QUICK": "1", "PYTHONHASHSEED": "0"}


def run_tool(*args, timeout=600, env=ENV):
    tic = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "labs.py"), *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    print(f"tools/labs.py {' '.join(map(str, args))}: {time.perf_counter() - tic:.0f} s\n{proc.stdout}{proc.stderr}")
    assert proc.returncode == 0, f"tools/labs.py {args[0]} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def built():
    run_tool("build")
    lab = labs.find_lab(LAB)
    return lab


# ----------------------------------------------------------------------------------------
# Notebooks made from the student notebook: answers from the master, from a description, or none.

def answer_cells(nb) -> dict[str, int]:
    """Question -> index of its answer cell (the otter answer cell before its grader.check)."""
    found, last_answer = {}, None
    for i, cell in enumerate(nb.cells):
        if "otter_answer_cell" in cell.metadata.get("tags", []):
            last_answer = i
        elif cell.cell_type == "code" and cell.source.strip().startswith("grader.check("):
            question = cell.source.strip()[len('grader.check("'):-2]
            found[question] = last_answer
    return found


def filled(lab, answers: dict | None = None, empty=()) -> nbformat.NotebookNode:
    """The student notebook with every answer cell taken from the master's solution,
    except ``answers`` (question -> source) and ``empty`` (left as ``...``)."""
    student = nbformat.read(lab.student_notebook, as_version=4)
    solution = {c.id: c for c in nbformat.read(lab.solution_notebook, as_version=4).cells}
    for question, index in answer_cells(student).items():
        cell = student.cells[index]
        if answers and question in answers:
            cell.source = answers[question].strip("\n")
        elif question not in empty:
            cell.source = solution[cell.id].source
    return student


def load_description(path: Path):
    spec = importlib.util.spec_from_file_location(f"submission_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def descriptions():
    return {p.stem: load_description(p) for p in sorted(SUBMISSIONS.glob("*.py"))}


def test_every_description_is_complete():
    for name, d in descriptions().items():
        assert set(d.EXPECTED) == set(QUESTIONS), f"{name}: EXPECTED must give a score for each of {QUESTIONS}"
        assert d.__doc__, f"{name}: say in its docstring what the submission does"


def test_answer_cells_are_found(built):
    nb = nbformat.read(built.student_notebook, as_version=4)
    assert list(answer_cells(nb)) == QUESTIONS


# ----------------------------------------------------------------------------------------
# The grading helpers on their own (fast, no kernel but one).

def test_labcheck_tripwire_catches_aliases_and_spares_the_tests():
    import labcheck
    import torch
    from sslcourse.losses import nt_xent as alias
    module = sys.modules["sslcourse.losses.nt_xent"]

    labcheck.guard(["sslcourse.losses.nt_xent.nt_xent"])
    z = torch.randn(4, 3)
    with labcheck.armed():
        with pytest.raises(labcheck.ReferenceCallError, match="implementation sslcourse.losses.nt_xent.nt_xent"):
            alias(z, z)
        with pytest.raises(labcheck.ReferenceCallError):
            module.nt_xent(z, z)
        expected = labcheck.reference("sslcourse.losses.nt_xent.nt_xent")(z, z)   # the tests' own access
    assert torch.allclose(alias(z, z), expected)                                    # disarmed again
    assert "sslcourse.losses.nt_xent.nt_xent" in labcheck.TRIPPED


def test_labcheck_time_limit_and_loop_detection():
    import labcheck
    with pytest.raises(labcheck.TestTimeout, match="did not finish within 0.3 s"):
        with labcheck.time_limit(0.3):
            while True:
                pass

    def looped(x):
        return sum(v for v in x)

    def vectorised(x):
        return x.sum()
    assert labcheck.has_python_loop(looped) and not labcheck.has_python_loop(vectorised)


def test_cell_time_limit_stops_a_top_level_loop_and_grading_goes_on():
    from nbclient import NotebookClient
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import labcheck\nlabcheck.install(forbidden=[], test_timeout=5, cell_timeout=1)"),
        nbformat.v4.new_code_cell("steps = 0\nwhile steps >= 0:\n    steps += 1"),
        nbformat.v4.new_code_cell("print('still grading')"),
    ])
    env = {**ENV, "PYTHONPATH": str(ROOT / "tools")}
    with _environ(env):
        NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True).execute()
    assert "did not finish within 1 s" in nb.cells[1].outputs[0].get("evalue", "")
    assert nb.cells[2].outputs[0]["text"] == "still grading\n"


class _environ:
    """Temporarily set this process's environment (a kernel inherits it)."""

    def __init__(self, env):
        self.env = env

    def __enter__(self):
        self.old = dict(os.environ)
        os.environ.update(self.env)

    def __exit__(self, *exc):
        os.environ.clear()
        os.environ.update(self.old)


# ----------------------------------------------------------------------------------------
# What the build produces.

def test_student_notebook_has_no_solution_nor_hidden_test(built):
    student = built.student_notebook.read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN TESTS", "labcheck", "hidden=True", "sys.path.insert"):
        assert marker not in student, f"the student notebook contains {marker!r}"
    nb = nbformat.read(built.student_notebook, as_version=4)
    public = nb.metadata["otter"]["tests"]
    assert sorted(public) == QUESTIONS, "every question has public tests in the student notebook"
    assert "clamp_min(1e-12)\n    return a_hat" not in student


def test_autograder_bundle_holds_every_test(built):
    import zipfile
    with zipfile.ZipFile(built.autograder) as zf:
        names = set(zf.namelist())
        q3 = zf.read("tests/q3.py").decode()
    assert {f"tests/{q}.py" for q in QUESTIONS} <= names
    assert {"files/labcheck.py", "lab.json"} <= names
    assert "hidden=True" in q3 and "has_python_loop" in q3
    assert labs.questions(built.autograder) == FULL


# ----------------------------------------------------------------------------------------
# Grading: one batch, every submission.

@pytest.fixture(scope="module")
def grades(built, tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    shutil.copy(built.solution_notebook, folder / "solution.ipynb")
    shutil.copy(built.student_notebook, folder / "empty.ipynb")
    for name, d in descriptions().items():
        if hasattr(d, "RAW"):
            (folder / f"{name}.ipynb").write_bytes(d.RAW)
            continue
        nb = filled(built, getattr(d, "ANSWERS", {}), getattr(d, "EMPTY", {"q6"}))
        if hasattr(d, "tamper"):
            d.tamper(nb)
        nbformat.write(nb, folder / f"{name}.ipynb")
    out = folder.parent / f"{folder.name}-grades.csv"
    run_tool("grade", folder, "--lab", LAB, "--out", out, "--jobs", 2, "--test-timeout", 4, "--timeout", 400)
    with open(out) as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    return rows, out


def scores(row):
    return {q: float(row[q]) for q in QUESTIONS}


def test_grades_csv_has_one_row_per_student_and_a_column_per_question(grades):
    rows, out = grades
    header = out.read_text().splitlines()[0].split(",")
    assert header == ["student", *QUESTIONS, "total", "notes"]
    assert set(rows) == {"solution", "empty", *descriptions()}
    assert (out.parent / "feedback" / "solution.txt").exists()


def test_solution_gets_full_marks(grades):
    row = grades[0]["solution"]
    assert scores(row) == FULL, row
    assert float(row["total"]) == sum(FULL.values())


def test_empty_student_notebook_gets_zero(grades):
    row = grades[0]["empty"]
    assert scores(row) == {q: 0 for q in QUESTIONS}, row
    assert float(row["total"]) == 0


@pytest.mark.parametrize("name", sorted(p.stem for p in SUBMISSIONS.glob("*.py")))
def test_broken_or_malicious_submission_gets_expected_score(grades, name):
    row = grades[0][name]
    d = descriptions()[name]
    assert scores(row) == {q: float(v) for q, v in d.EXPECTED.items()}, row
    assert float(row["total"]) == sum(d.EXPECTED.values())
    assert d.NOTE in row["notes"], f"notes should mention {d.NOTE!r}: {row['notes']!r}"


# ----------------------------------------------------------------------------------------
# The release.

@pytest.fixture(scope="module")
def release(built, tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "sslcourse-release"
    run_tool("release", "--out", out)
    return out


def test_release_contents(release):
    assert (release / "labs" / LAB / f"{LAB}.ipynb").exists()
    assert (release / "sslcourse" / "losses" / "nt_xent.py").exists()
    names = {p.name for p in release.rglob("*")}
    assert not {n for n in names if n.endswith(".zip") or "autograder" in n or n == "labcheck.py"}
    assert not (release / "tools").exists() and not (release / "tests").exists()
    assert release.with_suffix(".zip").exists()


def test_release_leak_check_passes_and_catches_a_planted_leak(release, tmp_path):
    assert labs.leak_check(release) == []
    planted = tmp_path / "planted"
    shutil.copytree(release, planted)
    solution_line = next(iter(labs.secrets()[f"{LAB} solutions"]))
    (planted / "lectures").mkdir(exist_ok=True)
    (planted / "lectures" / "notes.py").write_text(f"# copied from a friend\n{solution_line}\n")
    hidden_line = next(iter(labs.secrets()[f"{LAB} hidden tests"]))
    (planted / "sslcourse" / "extra.py").write_text(f"x = 1\n{hidden_line}\n")
    hits = labs.leak_check(planted)
    assert any("lectures/notes.py" in h and "solutions" in h for h in hits), hits
    assert any("sslcourse/extra.py" in h and "hidden tests" in h for h in hits), hits


def test_release_library_imports_and_stubs_name_the_lab(release):
    script = f"""
import importlib, inspect, pkgutil
import sslcourse
assert sslcourse.__file__.startswith({str(release)!r}), sslcourse.__file__
for info in pkgutil.walk_packages(sslcourse.__path__, "sslcourse."):
    if not info.name.endswith("__main__"):
        importlib.import_module(info.name)
from sslcourse.exercises import ExerciseNotDone
from sslcourse.losses import cosine_similarity_matrix, info_nce, info_nce_logits, nt_xent
import torch
z = torch.randn(4, 8)
for fn, args in [(cosine_similarity_matrix, (z, z)), (nt_xent, (z, z)), (info_nce, (z, z, z)),
                 (info_nce_logits, (z, z, z))]:
    assert fn.__doc__, fn
    try:
        fn(*args)
    except ExerciseNotDone as err:
        assert "implement this in lab {LAB}" in str(err), err
        assert isinstance(err, NotImplementedError)
    else:
        raise AssertionError(f"{{fn.__name__}} still works in the release")
assert list(inspect.signature(nt_xent).parameters) == ["z1", "z2", "temperature"]
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=release, env={**ENV, "PYTHONPATH": str(release)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout + proc.stderr


def test_student_notebook_with_solutions_passes_every_check_in_the_release(built, release, tmp_path):
    """A student's run: the release's library (stubs included), the master's answers typed in."""
    from nbclient import NotebookClient

    folder = tmp_path / "student"
    folder.mkdir()
    nb = filled(built)
    path = folder / f"{LAB}.ipynb"
    nbformat.write(nb, path)       # otter.Notebook reads the public tests from the saved file
    env = {**ENV, "PYTHONPATH": str(release)}
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}})
    with _environ(env):           # the kernel inherits this process's environment
        client.execute()
    checks = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith("grader.check("):
            text = "".join(o.get("text", "") + json.dumps(o.get("data", {})) for o in cell.outputs)
            checks[cell.source] = text
    assert len(checks) == len(QUESTIONS)
    for source, text in checks.items():
        assert "passed" in text.lower() and "failed" not in text.lower(), f"{source}: {text}"
