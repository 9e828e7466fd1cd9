"""The lab pipeline end to end: build, grade, release, and a student's run.

One module-scoped build serves every test. The submissions under tests/submissions/
(lab 05) and tests/submissions/NN_name/ (each lab of GRADED_LABS: 01, 02, 04, 06, 07, 08) are graded
in one `tools/labs.py grade` run per lab, as `make grade` would, together with the solution
(full marks) and the untouched student notebook (zero).
"""
import csv
import importlib.util
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import labs  # noqa: E402  (tools/labs.py)

LAB = "05_contrastive_losses"
SUBMISSIONS = Path(__file__).resolve().parent / "submissions"
FULL = {"q1": 2, "q2": 3, "q3": 3, "q4": 3, "q5": 2, "q6": 3}
QUESTIONS = list(FULL)
ENV = {**os.environ, "SSLCOURSE_QUICK": "1", "PYTHONHASHSEED": "0"}

MOCO_LAB = "06_moco"
COLLAPSE_LAB = "07_collapse_detective"
CONTEXT_LAB = "02_context_based"
MAE_LAB = "08_mae"
GENERATION_LAB = "01_generation_based"
CROSS_MODAL_LAB = "04_cross_modal"

# The labs graded the same way: lab -> (folder of its described submissions, its questions, their
# points, the questions those submissions leave empty). Each lab is graded in one batch.
GRADED_LABS = {lab: (SUBMISSIONS / lab, list(points), points, {empty}) for lab, points, empty in [
    (MOCO_LAB, {"q1": 3, "q2": 3, "q3": 2, "q4": 3}, "q4"),
    (COLLAPSE_LAB, {"q1": 3, "q2": 2, "q3": 2, "q4": 3, "q5": 3}, "q5"),
    (CONTEXT_LAB, {"q1": 3, "q2": 4, "q3": 3, "q4": 3}, "q4"),
    (MAE_LAB, {"q1": 3, "q2": 2, "q3": 3, "q4": 3, "q5": 3}, "q5"),
    (GENERATION_LAB, {"q1": 3, "q2": 3, "q3": 2, "q4": 3, "q5": 3}, "q5"),
    (CROSS_MODAL_LAB, {"q1": 3, "q2": 3, "q3": 3}, "q3")]}


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


def descriptions(folder=SUBMISSIONS):
    return {p.stem: load_description(p) for p in sorted(folder.glob("*.py"))}


@pytest.mark.parametrize("folder,questions", [(SUBMISSIONS, QUESTIONS),
                                              *((folder, questions) for folder, questions, _, _ in GRADED_LABS.values())])
def test_every_description_is_complete(folder, questions):
    assert descriptions(folder)
    for name, d in descriptions(folder).items():
        assert set(d.EXPECTED) == set(questions), f"{name}: EXPECTED must give a score for each of {questions}"
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


def test_labcheck_tripwire_on_a_decorated_reference_keeps_the_decorator_for_the_tests():
    """momentum_update is wrapped by @torch.no_grad(): the tripwire goes on the function inside,
    which the library's default hooks (bound when MoCo was defined) reach too."""
    import labcheck
    import torch
    from torch import nn
    from sslcourse.methods.momentum import Queue, momentum_update

    labcheck.guard(["sslcourse.methods.momentum.momentum_update", "sslcourse.methods.momentum.enqueue"])
    online, target = nn.Linear(3, 2), nn.Linear(3, 2).requires_grad_(False)
    with labcheck.armed():
        with pytest.raises(labcheck.ReferenceCallError, match="momentum.momentum_update"):
            momentum_update(online, target, 0.5)
        with pytest.raises(labcheck.ReferenceCallError, match="momentum.enqueue"):
            Queue(8, 2).push(torch.randn(3, 2))
        labcheck.reference("sslcourse.methods.momentum.momentum_update")(online, target, 0.0)   # the tests' access
    assert torch.equal(target.weight, online.weight)
    momentum_update(online, target, 1.0)                                                       # disarmed again


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

def grade_all(lab, described, empty, folder, *options):
    """Grade the solution, the untouched student notebook and every description in one run."""
    shutil.copy(lab.solution_notebook, folder / "solution.ipynb")
    shutil.copy(lab.student_notebook, folder / "empty.ipynb")
    for name, d in described.items():
        if hasattr(d, "RAW"):
            (folder / f"{name}.ipynb").write_bytes(d.RAW)
            continue
        nb = filled(lab, getattr(d, "ANSWERS", {}), getattr(d, "EMPTY", empty))
        if hasattr(d, "tamper"):
            d.tamper(nb)
        nbformat.write(nb, folder / f"{name}.ipynb")
    out = folder.parent / f"{folder.name}-grades.csv"
    run_tool("grade", folder, "--lab", lab.name, "--out", out, "--jobs", 2, *options)
    with open(out) as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    return rows, out


# One submission takes 15-60 s here; a whole-notebook limit of 300 s leaves room for a loaded machine
# and keeps a stalled run, which the grader runs twice, from costing CI more than a few minutes.
@pytest.fixture(scope="module")
def grades(built, tmp_path_factory):
    return grade_all(built, descriptions(), {"q6"}, tmp_path_factory.mktemp("submissions"),
                     "--test-timeout", 4, "--timeout", 300)


def scores(row, questions=QUESTIONS):
    return {q: float(row[q]) for q in questions}


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


def _stall_then_finish(marker: str | None) -> None:
    """A stand-in for the grading child: it hangs on its first run (on every run without a marker)."""
    os.setsid()
    if marker is None or not Path(marker).exists():
        if marker:
            Path(marker).touch()
        time.sleep(600)


def test_a_stalled_grading_run_is_retried_once_then_zero(built, tmp_path, monkeypatch, capsys):
    """The whole-notebook limit is the grader's last resort: an overrun is graded once more,
    with a note, and a second overrun gets zero, with the stalled run's log printed."""
    folder = tmp_path / "submissions"
    folder.mkdir()
    for name in ("recovers", "always_stalls"):
        (folder / f"{name}.ipynb").write_text("{}")
    attempts = []

    def fake_start(path, autograder, points, timeout, overrides):
        attempts.append(path.stem)
        tmp = tempfile.TemporaryDirectory()
        (Path(tmp.name) / "otter.log").write_text(f"log of {path.stem}, attempt {attempts.count(path.stem)}\n")
        marker = str(tmp_path / path.stem) if path.stem == "recovers" else None
        child = multiprocessing.get_context("fork").Process(target=_stall_then_finish, args=(marker,))
        child.start()
        now = time.monotonic()
        return labs._Job(path.stem, path, tmp, child, now + timeout, {}, now)

    def fake_finish(job, points, timed_out):
        return labs.Grade(job.student, {q: 0.0 if timed_out else float(p) for q, p in points.items()},
                          ["grading stopped"] if timed_out else [])

    monkeypatch.setattr(labs, "_start", fake_start)
    monkeypatch.setattr(labs, "_finish", fake_finish)
    result = {g.student: g for g in labs.grade(folder, tmp_path / "grades.csv", built, timeout=2, jobs=2)}
    assert sorted(attempts) == ["always_stalls", "always_stalls", "recovers", "recovers"]
    assert sum(result["recovers"].scores.values()) == sum(FULL.values())
    assert any("graded twice" in n for n in result["recovers"].notes), result["recovers"].notes
    assert sum(result["always_stalls"].scores.values()) == 0
    assert "grading stopped" in result["always_stalls"].notes
    printed = capsys.readouterr().out
    assert "log of always_stalls, attempt 1" in printed and "grading it once more" in printed


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
from sslcourse.losses import cosine_similarity_matrix, info_nce, info_nce_logits, nt_xent
import torch
z = torch.randn(4, 8)
calls = [(cosine_similarity_matrix, (z, z)), (nt_xent, (z, z)), (info_nce, (z, z, z)), (info_nce_logits, (z, z, z))]
assert all(fn.__doc__ for fn, _ in calls) and issubclass(ExerciseNotDone, NotImplementedError)
assert_stopped({LAB!r}, [(fn.__name__, lambda fn=fn, args=args: fn(*args)) for fn, args in calls])
assert list(inspect.signature(nt_xent).parameters) == ["z1", "z2", "temperature"]
print("ok")
"""
    run_python_in_release(release, script)


def run_in_release(lab, release, folder, questions):
    """A student's run: the release's library (stubs included), the master's answers typed in."""
    from nbclient import NotebookClient

    folder.mkdir()
    nb = filled(lab)
    path = folder / f"{lab.name}.ipynb"
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
    assert len(checks) == len(questions)
    for source, text in checks.items():
        assert "passed" in text.lower() and "failed" not in text.lower(), f"{source}: {text}"


def test_student_notebook_with_solutions_passes_every_check_in_the_release(built, release, tmp_path):
    run_in_release(built, release, tmp_path / "student", QUESTIONS)


# ----------------------------------------------------------------------------------------
# Lab 06 (MoCo): the same pipeline on a second lab, whose functions are library code
# decorated with @torch.no_grad() and whose run plugs the student's functions into MoCo.

def test_release_stubs_the_queue_and_the_momentum_update_for_lab_06(release):
    """Read, not run: test_release_library_imports_and_stubs_name_the_lab already imports every
    module of the release and calls stubs, and the student's run below trains MoCo in it."""
    stubs = assert_stubs(release, MOCO_LAB, {"sslcourse/methods/momentum.py": ["momentum_update", "enqueue"]})
    for name, arguments in [("momentum_update", ["online", "target", "momentum"]),
                            ("enqueue", ["queue", "pointer", "keys"])]:
        assert [a.arg for a in stubs[name].args.args] == arguments, name
    source = (release / "sslcourse" / "methods" / "momentum.py").read_text()
    assert "def momentum_copy" in source and "class Queue" in source     # the rest of the module is kept
    assert (release / "labs" / MOCO_LAB / f"{MOCO_LAB}.ipynb").exists()


# ----------------------------------------------------------------------------------------
# Lab 07 (the collapse detective): library functions whose stubs reach further (the
# diagnostics under analysis.collapse_report and the trainer's diagnostics_every), a
# guarded function outside the manifest (singular_values), and training runs that use the
# student's loss and diagnostics.

def test_release_stubs_vicreg_and_the_diagnostics_for_lab_07(release):
    """The five functions are stubs naming lab 07; what is built on the diagnostics says so too,
    and the rest of both modules still works."""
    assert_stubs(release, COLLAPSE_LAB, {"sslcourse/losses/vicreg.py": ["vicreg", "variance_term", "covariance_term"],
                                         "sslcourse/analysis.py": ["normalized_std", "effective_rank"]})
    script = f"""
import torch
from sslcourse.analysis import collapse_report, singular_values, uniformity
from sslcourse.losses import barlow_twins
z = torch.randn(64, 8)
# collapse_report is also what train(..., diagnostics_every=k) and --diagnostics-every call
assert_stopped({COLLAPSE_LAB!r}, [("collapse_report", lambda: collapse_report(z))])
assert singular_values(z).shape == (8,) and uniformity(z) < 0 and barlow_twins(z, z) >= 0   # the rest is kept
print("ok")
"""
    run_python_in_release(release, script)


# ----------------------------------------------------------------------------------------
# Lab 02 (rotations and jigsaw puzzles): stubs that stop two library tasks (Rotation's pseudo
# labels, Jigsaw's permutation set and tiles), a function graded on all its options
# (permutation_set's four criteria), and runs that plug the student's rotate_batch into Rotation.

def assert_stubs(release, lab_name, functions_by_module) -> dict:
    """Each listed function of each module of the release is a stub naming ``lab_name``, docstring kept.
    Returns the stubs' syntax trees by function name."""
    import ast
    stubs = {}
    for module, names in functions_by_module.items():
        tree = ast.parse((release / module).read_text())
        functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
        for name in names:
            node = functions[name]
            assert ast.get_docstring(node), name
            assert [ast.unparse(statement) for statement in node.body[1:]] == \
                [f"raise ExerciseNotDone({name!r}, {lab_name!r})"], f"{name} is not a stub naming lab {lab_name}"
            stubs[name] = node
    return stubs


# Defined before every script that run_python_in_release runs.
RELEASE_SCRIPT_PRELUDE = """
from sslcourse.exercises import ExerciseNotDone


def assert_stopped(lab, calls):
    \"\"\"Each ``(what, call)``: calling it must raise the stubs' error naming ``lab``.\"\"\"
    for what, call in calls:
        try:
            call()
        except ExerciseNotDone as err:
            assert f"implement this in lab {lab}" in str(err), err
        else:
            raise AssertionError(f"{what} still works without the lab's functions")
"""


def run_python_in_release(release, script):
    """Run ``script`` in a fresh interpreter on the release's library; it must print "ok"."""
    proc = subprocess.run([sys.executable, "-c", RELEASE_SCRIPT_PRELUDE + script], cwd=release, env={**ENV, "PYTHONPATH": str(release)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout + proc.stderr


def test_release_stubs_rotations_and_jigsaw_for_lab_02(release):
    """The three functions are stubs naming lab 02; the Rotation and Jigsaw tasks built on them raise
    the same error, and the rest of both modules still works."""
    assert_stubs(release, CONTEXT_LAB, {"sslcourse/methods/rotation.py": ["rotate_batch"],
                                        "sslcourse/methods/jigsaw.py": ["permutation_set", "jigsaw_tiles"]})
    run_python_in_release(release, f"""
import torch
from sslcourse.methods import build_method
from sslcourse.methods.jigsaw import hamming_stats
from sslcourse.methods.rotation import attention_map
from sslcourse.models import build_backbone
x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
rotation = build_method("rotation", build_backbone("convnet"))
assert_stopped({CONTEXT_LAB!r}, [("the rotation task", lambda: rotation.training_step(x, torch.Generator())),
                                 ("the jigsaw task", lambda: build_method("jigsaw", build_backbone("convnet")))])
assert hamming_stats(torch.tensor([[0, 1, 2], [1, 2, 0]])) == (3.0, 3)          # the rest is kept
assert attention_map(rotation.backbone, x, 1).shape == (4, 32, 32)
print("ok")
""")


# ----------------------------------------------------------------------------------------
# Lab 08 (MAE): stubs in two modules that the library's MAE, SimMIM and masked language
# modelling are built on, library helpers guarded by a hidden test (masked_mean,
# normalise_patches), and a run that hands the student's four functions to MAE.

def test_release_stubs_patches_masking_and_the_mae_loss_for_lab_08(release):
    """The four functions are stubs naming lab 08; MAE, SimMIM and masked language modelling raise
    the same error, and the rest of both modules still works."""
    assert_stubs(release, MAE_LAB, {"sslcourse/masking.py": ["patchify", "unpatchify", "random_masking"],
                                    "sslcourse/methods/mae.py": ["mae_loss"]})
    script = f"""
import torch
from sslcourse import text
from sslcourse.masking import kept_count, masked_mean, take_tokens, visible_mean_prediction
from sslcourse.methods import build_method
from sslcourse.methods.mae import normalise_patches
from sslcourse.models import ViT
x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
mae, simmim = (build_method(name, ViT(image_size=16), image_size=16) for name in ("mae", "simmim"))
corpus = text.caption_corpus(8)
tokenizer = text.Tokenizer.from_corpus(corpus)
assert_stopped({MAE_LAB!r}, [("MAE", lambda: mae.training_step(x, torch.Generator())),
                             ("MAE's measure", lambda: mae.reconstruction_error(x, torch.Generator())),
                             ("SimMIM", lambda: simmim.training_step(x, torch.Generator())),
                             ("masked language modelling",
                              lambda: text.mask_language(tokenizer.encode(corpus), tokenizer, torch.Generator()))])
tokens = torch.randn(2, 5, 3)                                                   # the rest is kept
assert take_tokens(tokens, torch.tensor([[4, 0], [1, 2]])).shape == (2, 2, 3) and kept_count(16, 0.75) == 4
assert masked_mean(torch.ones(2, 5), torch.ones(2, 5, dtype=torch.bool)) == 1
assert visible_mean_prediction(tokens, torch.zeros(2, 5, dtype=torch.bool)).shape == (2, 5, 3)
assert normalise_patches(tokens).shape == (2, 5, 3)
print("ok")
"""
    run_python_in_release(release, script)


# ----------------------------------------------------------------------------------------
# Lab 01 (colorization's targets): stubs in two modules, one of them (rgb_to_lab) under three
# methods (colorization, split-brain, CMC), and runs that hand the student's four functions to
# the colorization module.

def test_release_stubs_the_lab_conversion_and_the_colour_targets_for_lab_01(release):
    """The four functions are stubs naming lab 01; colorization, split-brain and CMC raise the same error,
    and the rest of both modules still works (lab_to_rgb, the loss)."""
    assert_stubs(release, GENERATION_LAB, {"sslcourse/transforms.py": ["rgb_to_lab"],
                                           "sslcourse/methods/colorization.py": ["quantize_ab", "smooth_distribution",
                                                                                 "rebalancing_weights"]})
    run_python_in_release(release, f"""
import torch
from sslcourse.methods import build_method
from sslcourse.methods.colorization import ab_bins, rebalanced_cross_entropy
from sslcourse.models import build_backbone
from sslcourse.transforms import lab_to_rgb
x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
cmc = build_method("cmc", build_backbone("convnet"), image_size=16)
assert_stopped({GENERATION_LAB!r}, [
    ("the bin table", ab_bins),
    ("colorization", lambda: build_method("colorization", build_backbone("convnet"), image_size=16)),
    ("split-brain", lambda: build_method("split_brain", build_backbone("convnet"), image_size=16)),
    ("CMC", lambda: cmc.training_step(x, torch.Generator()))])
assert lab_to_rgb(torch.zeros(1, 3, 2, 2)).abs().max() == 0                      # the rest is kept
logits, targets = torch.zeros(2, 5, 3, 3), torch.zeros(2, 3, 3, dtype=torch.long)
assert abs(rebalanced_cross_entropy(logits, targets, torch.ones(5)).item() - torch.log(torch.tensor(5.0)).item()) < 1e-6
print("ok")
""")


# ----------------------------------------------------------------------------------------
# Lab 04 (CLIP): stubs in two modules under the library's CLIP (its training step, zero-shot
# accuracy and the prompt study), clip_logits given, and a run that hands the student's loss and
# zero-shot classifier to CLIP.

def test_release_stubs_the_clip_loss_and_the_zero_shot_classifier_for_lab_04(release):
    """The two functions are stubs naming lab 04; CLIP's training step (so training, pretrain and the CLI's
    `pretrain --method clip`), zero_shot_accuracy and prompt_study raise the same error, and the rest of both
    modules still works (clip_logits, the encoders, the tokenizer)."""
    assert_stubs(release, CROSS_MODAL_LAB, {"sslcourse/losses/clip.py": ["clip_loss"],
                                            "sslcourse/methods/clip.py": ["zero_shot_classifier"]})
    run_python_in_release(release, f"""
import torch
from sslcourse.data import ImageDataset
from sslcourse.data.world import CLASSES
from sslcourse.losses.clip import clip_logits, clip_loss
from sslcourse.methods import CLIP
from sslcourse.methods.clip import prompt_study, zero_shot_accuracy, zero_shot_classifier
from sslcourse.models import build_backbone
from sslcourse.text import caption_corpus
x, labels = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8), torch.arange(4)
data = ImageDataset("tiny", x, labels, x, labels, list(CLASSES))
clip = CLIP(build_backbone("convnet"), n_train=4, image_size=16, train_captions=caption_corpus(4))
z = torch.randn(4, 8)
assert_stopped({CROSS_MODAL_LAB!r}, [
    ("clip_loss", lambda: clip_loss(z, z)),
    ("CLIP's training step", lambda: clip.training_step(x, torch.Generator(), index=torch.arange(4))),
    ("zero_shot_classifier", lambda: zero_shot_classifier(clip, ["star", "circle"])),
    ("zero_shot_accuracy", lambda: zero_shot_accuracy(clip, data)),
    ("prompt_study", lambda: prompt_study(clip, data, ("a {{}} .",)))])
assert clip_logits(z, z, 1.0).shape == (4, 4)                                    # the rest is kept
assert clip.encode_text(clip.tokenize(["a star .", "the circle is"])).shape == (2, 64)
assert clip.encode_image(torch.randn(4, 3, 16, 16)).shape == (4, 64)
print("ok")
""")


# ----------------------------------------------------------------------------------------
# The labs of GRADED_LABS are graded the same way: the solution, the untouched notebook and
# every description, in one batch per lab.

_GRADING_BATCHES = {}   # lab name -> (rows, csv path), one batch per lab for the whole module


@pytest.fixture(scope="module")
def lab_grades(request, built, tmp_path_factory):
    """(lab name, rows, csv path) of one grading batch; ``request.param`` names the lab.

    pytest sets this fixture up again for each test of the (lab, submission) parametrisation
    below (each pair is a parameter set of its own), so the batches are kept here: each lab is
    graded once."""
    if request.param not in _GRADING_BATCHES:
        folder, _, _, empty = GRADED_LABS[request.param]
        _GRADING_BATCHES[request.param] = grade_all(labs.find_lab(request.param), descriptions(folder), empty,
                                                    tmp_path_factory.mktemp(request.param), "--test-timeout", 60,
                                                    "--timeout", 300)
    return (request.param, *_GRADING_BATCHES[request.param])


@pytest.mark.parametrize("lab_grades", list(GRADED_LABS), indirect=True)
def test_lab_solution_gets_full_marks_and_empty_notebook_zero(lab_grades):
    lab, rows, out = lab_grades
    folder, questions, full, _ = GRADED_LABS[lab]
    assert out.read_text().splitlines()[0].split(",") == ["student", *questions, "total", "notes"]
    assert set(rows) == {"solution", "empty", *descriptions(folder)}
    assert scores(rows["solution"], questions) == full, rows["solution"]
    assert scores(rows["empty"], questions) == {q: 0 for q in questions}, rows["empty"]


@pytest.mark.parametrize("lab_grades,name", [(lab, path.stem) for lab, (folder, *_) in GRADED_LABS.items()
                                             for path in sorted(folder.glob("*.py"))], indirect=["lab_grades"])
def test_lab_broken_submission_gets_expected_score(lab_grades, name):
    lab, rows, _ = lab_grades
    folder, questions, _, _ = GRADED_LABS[lab]
    row, d = rows[name], descriptions(folder)[name]
    assert scores(row, questions) == {q: float(v) for q, v in d.EXPECTED.items()}, row
    assert d.NOTE in row["notes"], f"notes should mention {d.NOTE!r}: {row['notes']!r}"


# ----------------------------------------------------------------------------------------
# What each lab's build must hold, and a student's run of it in the release, the same way
# for every lab listed here. Per lab: answers that only the solution holds; per test file
# of the autograder bundle, what it must contain; the manifest's students_write.

BUILT_LABS = {
    MOCO_LAB: {"answers": ("keys.to(queue.dtype)", 'queue_size=MOCO["queue_size"]'),
               "tests": {"q3": ("hidden=True", "info_nce_logits")},
               "students_write": ["sslcourse.methods.momentum.momentum_update",
                                  "sslcourse.methods.momentum.enqueue"]},
    COLLAPSE_LAB: {"answers": ("spread_and_redundancy", "eigvalsh(centred", '"C": "complete"',
                               "vicreg(z1, z2, 0.0, var_weight, cov_weight)"),
                   "tests": {"q3": ("hidden=True", "sslcourse.analysis.singular_values"),
                             # the format check is free; the three verdicts score
                             "q4": ("@test_case(points=0, hidden=False)",)},
                   "students_write": ["sslcourse.losses.vicreg.vicreg", "sslcourse.losses.vicreg.variance_term",
                                      "sslcourse.losses.vicreg.covariance_term", "sslcourse.analysis.normalized_std",
                                      "sslcourse.analysis.effective_rank"]},
    CONTEXT_LAB: {"answers": ("torch.rot90(images, quarter, dims=(2, 3))", "summed.masked_fill(in_set, -1.0)",
                              "repeat_interleave(3) * cell", "rotate_batch(floats, generator"),
                  "tests": {"q2": ("hidden=True", "def test_q2_other_criteria_against_reference"),
                            "q4": ("hidden=True", "labcheck.armed()")},
                  "students_write": ["sslcourse.methods.rotation.rotate_batch",
                                     "sslcourse.methods.jigsaw.permutation_set",
                                     "sslcourse.methods.jigsaw.jigsaw_tiles"]},
    MAE_LAB: {"answers": ("grid.permute(0, 2, 4, 3, 5, 1)", "per_patch.permute(0, 5, 1, 3, 2, 4)",
                          "order = torch.rand(batch_size, length, generator=generator).argsort(dim=1)",
                          "torch.clamp(weights.sum(), min=1.0)", 'build_method("mae", build_backbone("vit")'),
              "tests": {"q3": ("hidden=True", "get_state()"),
                        "q4": ("hidden=True", "sslcourse.masking.masked_mean", "sslcourse.methods.mae.normalise_patches"),
                        "q5": ("hidden=True", "labcheck.armed(), mock.patch.multiple(library_mae")},
              "students_write": ["sslcourse.masking.patchify", "sslcourse.masking.unpatchify",
                                 "sslcourse.masking.random_masking", "sslcourse.methods.mae.mae_loss"]},
    GENERATION_LAB: {"answers": ("ratio.clamp(min=knee) ** (1 / 3)", "return bin_of_cell[25 * cell[:, 0] + cell[:, 1]]",
                                 "torch.exp(-squared_distances / (2 * sigma ** 2)) @ (p / p.sum())",
                                 "return inverse / torch.dot(smoothed, inverse)", "rebalance=True)"),
                     "tests": {"q2": ("hidden=True", "_grid_to_bin.cache_clear()", "inspect.getsource(quantize_ab)"),
                               "q4": ("hidden=True", "mock.patch.dict(rebalancing_weights.__globals__"),
                               "q5": ("hidden=True", "labcheck.armed(), mock.patch.multiple(colorization")},
                     "students_write": ["sslcourse.transforms.rgb_to_lab", "sslcourse.methods.colorization.quantize_ab",
                                        "sslcourse.methods.colorization.smooth_distribution",
                                        "sslcourse.methods.colorization.rebalancing_weights"]},
    CROSS_MODAL_LAB: {"answers": ("F.cross_entropy(logits.T, pairs)", "F.normalize(prompts.mean(dim=0), dim=0)",
                                  'clip_method = CLIP.for_data(build_backbone("convnet"), data)'),
                      "tests": {"q1": ("hidden=True", "requires_grad=True)), {}))", "clip_loss(image, image, 100.0)"),
                                "q2": ("hidden=True", "sslcourse.methods.clip.zero_shot_classifier", "m.training"),
                                "q3": ("hidden=True", "labcheck.armed(), mock.patch.multiple(library_clip")},
                      "students_write": ["sslcourse.losses.clip.clip_loss", "sslcourse.methods.clip.zero_shot_classifier"]},
}


@pytest.mark.parametrize("name", list(BUILT_LABS))
def test_lab_student_notebook_and_autograder_bundle(built, name):
    import zipfile
    lab, (_, questions, full, _), expected = labs.find_lab(name), GRADED_LABS[name], BUILT_LABS[name]
    nb = nbformat.read(lab.student_notebook, as_version=4)
    student = "\n".join([cell.source for cell in nb.cells] + list(nb.metadata["otter"]["tests"].values()))
    solution = "\n".join(cell.source for cell in nbformat.read(lab.solution_notebook, as_version=4).cells)
    for marker in ("BEGIN SOLUTION", "labcheck", "hidden=True"):
        assert marker not in student, f"the student notebook contains {marker!r}"
    for answer in expected["answers"]:
        assert answer in solution and answer not in student, f"{answer!r} belongs to the solution only"
    assert list(answer_cells(nb)) == questions
    assert sorted(nb.metadata["otter"]["tests"]) == questions
    with zipfile.ZipFile(lab.autograder) as zf:
        assert json.loads(zf.read("lab.json"))["students_write"] == expected["students_write"]
        for question, needles in expected["tests"].items():
            test = zf.read(f"tests/{question}.py").decode()
            for needle in needles:
                assert needle in test, f"tests/{question}.py of {name} should contain {needle!r}"
    assert labs.questions(lab.autograder) == full


@pytest.mark.parametrize("name", list(BUILT_LABS))
def test_lab_student_notebook_with_solutions_passes_every_check_in_the_release(built, release, tmp_path, name):
    """Each run trains in the release with the student's functions plugged in, the library's being stubs:
    MoCo with the three of lab 06, VICReg with lab 07's loss and diagnostics, MAE with lab 08's four,
    colorization (without and with rebalancing) with lab 01's four, CLIP with lab 04's two,
    rotation with lab 02's rotate_batch."""
    run_in_release(labs.find_lab(name), release, tmp_path / "student", GRADED_LABS[name][1])
