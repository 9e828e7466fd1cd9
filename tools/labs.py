"""Build, grade and release the labs. Instructors only: never shipped to students.

    python tools/labs.py build                     # make labs
    python tools/labs.py grade SUBMISSIONS [--lab NAME] [--out grades.csv]   # make grade
    python tools/labs.py release [--out DIR]       # make release (also runs the leak check)
    python tools/labs.py check-release DIR         # the leak check alone

A lab is a folder ``labs/NN_name/`` (NN = the syllabus unit) holding a master notebook in
otter-grader's format (solutions, public tests, hidden tests) and ``lab.toml``, its
manifest: the library functions the lab asks students to write, and time limits.

``build`` runs ``otter assign`` on each master and writes, under ``build/labs/NN_name/``:
``student/NN_name.ipynb`` (the notebook students get: no solutions, public tests only),
``solution/NN_name.ipynb`` (the master with the otter markup resolved) and
``autograder.zip`` (every test, plus ``labcheck.py``, the hidden tests' helpers).

``grade`` grades every file of a folder with otter's container-free runner, one child
process per submission, and writes ``grades.csv`` (one row a student, one column a
question, a total and notes) and ``feedback/STUDENT.txt``.

``release`` assembles what students receive: the student notebooks, the lectures and
the library with the lab functions' bodies replaced by stubs; then searches it for every
solution, hidden test and reference body, and fails on any hit.
"""
import argparse
import ast
import contextlib
import csv
import hashlib
import io
import json
import multiprocessing
import os
import re
import shutil
import signal
import sys
import tempfile
import textwrap
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABS = ROOT / "labs"
BUILD = ROOT / "build" / "labs"
RELEASE = ROOT / "build" / "release"
LABCHECK = Path(__file__).resolve().with_name("labcheck.py")
STUB_ERROR = "ExerciseNotDone"


# ----------------------------------------------------------------------------------------
# Labs and their manifests.

@dataclass
class Lab:
    name: str                      # "05_contrastive_losses"
    folder: Path
    master: Path
    students_write: list[str]      # qualified names of reference functions students write
    test_timeout: float = 120      # seconds for one test case while grading
    cell_timeout: float = 900      # seconds for one notebook cell while grading
    extra: dict = field(default_factory=dict)

    @property
    def build(self) -> Path:
        return BUILD / self.name

    @property
    def student_notebook(self) -> Path:
        return self.build / "student" / f"{self.name}.ipynb"

    @property
    def solution_notebook(self) -> Path:
        return self.build / "solution" / f"{self.name}.ipynb"

    @property
    def autograder(self) -> Path:
        return self.build / "autograder.zip"


def load_lab(folder: Path) -> Lab:
    import tomllib   # Python 3.11+, as in the course's virtual environment

    manifest = folder / "lab.toml"
    if not manifest.is_file():
        raise SystemExit(f"{folder} has no lab.toml: every lab folder needs its manifest (see README, "
                         f"'For instructors')")
    with open(manifest, "rb") as f:
        spec = tomllib.load(f)
    master = folder / spec.get("master", f"{folder.name}.ipynb")
    if not master.is_file():
        raise SystemExit(f"{manifest}: the master notebook {master.name} does not exist")
    if not re.fullmatch(r"\d\d_[a-z0-9_]+", folder.name):
        raise SystemExit(f"lab folder {folder.name!r} must be named NN_name, NN being its syllabus unit")
    grading = spec.get("grading", {})
    return Lab(folder.name, folder, master, list(spec.get("students_write", [])),
               float(grading.get("test_timeout", 120)), float(grading.get("cell_timeout", 900)), spec)


def all_labs() -> list[Lab]:
    return [load_lab(p) for p in sorted(LABS.iterdir()) if p.is_dir() and (p / "lab.toml").exists()]


def find_lab(name: str | None) -> Lab:
    labs = all_labs()
    if name is None:
        if len(labs) != 1:
            raise SystemExit(f"several labs exist ({', '.join(l.name for l in labs)}): choose one with LAB=NAME")
        return labs[0]
    for lab in labs:
        if name in (lab.name, lab.name[:2]):
            return lab
    raise SystemExit(f"no lab named {name!r}; labs: {', '.join(l.name for l in labs)}")


# ----------------------------------------------------------------------------------------
# make labs

def build(labs: list[Lab] | None = None) -> None:
    """otter assign every master; normalise the outputs under build/labs/NAME/."""
    from otter.assign import main as otter_assign

    for lab in labs or all_labs():
        shutil.rmtree(lab.build, ignore_errors=True)
        raw = lab.build / "otter"
        # otter assign resolves support files relative to the master: run it from there.
        with _quiet():
            otter_assign(str(lab.master), str(raw), no_pdfs=True, no_run_tests=True)
        (lab.build / "student").mkdir(parents=True)
        (lab.build / "solution").mkdir(parents=True)
        shutil.copy(raw / "student" / lab.master.name, lab.student_notebook)
        shutil.copy(raw / "autograder" / lab.master.name, lab.solution_notebook)
        zips = sorted((raw / "autograder").glob("*.zip"))
        if len(zips) != 1:
            raise SystemExit(f"{lab.name}: expected one autograder zip from otter assign, found {len(zips)}")
        with zipfile.ZipFile(zips[0]) as src, zipfile.ZipFile(lab.autograder, "w", zipfile.ZIP_DEFLATED) as dst:
            for item in src.infolist():
                dst.writestr(item, src.read(item.filename))
            dst.write(LABCHECK, "files/labcheck.py")
            dst.writestr("lab.json", json.dumps({"name": lab.name, "students_write": lab.students_write,
                                                  "test_timeout": lab.test_timeout,
                                                  "cell_timeout": lab.cell_timeout}))
        shutil.rmtree(raw)
        print(f"built {lab.name}: {lab.build.relative_to(ROOT)}/"
              f"{{student,solution}}/{lab.name}.ipynb and autograder.zip")


class _quiet:
    """Silence otter's chatter on stdout."""

    def __enter__(self):
        self._stdout, sys.stdout = sys.stdout, io.StringIO()

    def __exit__(self, *exc):
        captured, sys.stdout = sys.stdout.getvalue(), self._stdout
        if exc[0] is not None:
            print(captured)


def questions(autograder: Path) -> dict[str, float]:
    """Question name -> points, in notebook order, from the autograder bundle's tests."""
    from otter.test_files.exception_test import ExceptionTestFile

    found = {}
    with zipfile.ZipFile(autograder) as zf:
        for name in sorted(n for n in zf.namelist() if re.fullmatch(r"tests/[^/]+\.py", n)):
            test = ExceptionTestFile.from_string(zf.read(name).decode(), path=name)
            found[test.name] = sum(tc.points or 0 for tc in test.test_cases)
    return dict(sorted(found.items(), key=lambda kv: [int(t) if t.isdigit() else t
                                                      for t in re.split(r"(\d+)", kv[0])]))


# ----------------------------------------------------------------------------------------
# make grade: integrity audit, then otter run in a child process.

ALLOWED_FROM_OTTER = {"Notebook"}
SUSPICIOUS_NAMES = {"labcheck", "Checker", "GradingResults", "ExceptionTestFile", "TestCaseResult", "TRIPPED"}
SUSPICIOUS_ATTRS = {"__code__", "_getframe", "f_back", "f_globals", "f_locals", "get_objects", "get_referrers",
                    "setitimer", "test_case_results", "_test_files", "init_grading_mode"}


def audit(nb) -> list[str]:
    """Statically look for code that tampers with the grader. Returns human-readable findings.

    Running the grader's own copy of the tests already defeats edited test cells and a
    redefined ``grader.check``; this audit catches attempts to reach *into* the grader
    (otter's internals, the tests' helpers, frames, code objects, signal timers).
    """
    findings = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue            # it fails when it runs, with the student's own error message
        for node in ast.walk(tree):
            problem = None
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("otter."):
                        problem = f"imports {alias.name}"
                    elif alias.name in ("signal", "labcheck", "gc"):
                        problem = f"imports {alias.name}"
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                names = {a.name for a in node.names}
                if module.startswith("otter.") or (module == "otter" and names - ALLOWED_FROM_OTTER):
                    problem = f"imports {', '.join(sorted(names))} from {module}"
                elif module in ("signal", "labcheck", "gc"):
                    problem = f"imports from {module}"
            elif isinstance(node, ast.Name) and node.id in SUSPICIOUS_NAMES:
                problem = f"uses {node.id}"
            elif isinstance(node, ast.Attribute):
                if node.attr in SUSPICIOUS_ATTRS:
                    problem = f"uses .{node.attr}"
                elif isinstance(node.value, ast.Name) and node.value.id == "otter" and node.attr != "Notebook":
                    problem = f"uses otter.{node.attr}"
                elif (isinstance(node.value, ast.Attribute) and node.value.attr == "Notebook"
                      and isinstance(node.value.value, ast.Name) and node.value.value.id == "otter"):
                    problem = f"changes otter.Notebook.{node.attr}"
                elif isinstance(node.value, ast.Name) and node.value.id == "sys" and node.attr == "modules":
                    problem = "uses sys.modules"
            if problem:
                findings.append(f"cell {index + 1}, line {getattr(node, 'lineno', '?')}: {problem}")
    return findings


def harness_cell(lab_config: dict) -> str:
    forbidden = json.dumps(lab_config.get("students_write", []))
    return (f"import labcheck as _labcheck_harness\n"
            f"_labcheck_harness.install(forbidden={forbidden}, "
            f"test_timeout={lab_config['test_timeout']}, cell_timeout={lab_config['cell_timeout']})\n")


@dataclass
class Grade:
    student: str
    scores: dict            # question -> points
    notes: list
    feedback: str = ""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _run_otter(ag_dir: str, log_path: str) -> None:
    """Child process: run otter's autograder on ag_dir (its own session, so it can be killed whole)."""
    os.setsid()
    with open(log_path, "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = sys.stdout
        from otter.run.run_autograder import main as run_autograder
        run_autograder(ag_dir, otter_run=True, logo=False, debug=False, print_summary=True)


@dataclass
class _Job:
    """A submission being graded by a child process."""
    student: str
    path: Path
    tmp: tempfile.TemporaryDirectory
    child: multiprocessing.Process
    deadline: float
    test_hashes: dict
    started: float


def _start(path: Path, autograder: Path, points: dict, timeout: float, overrides: dict):
    """Check a submission and start grading it; return a finished Grade when it cannot run."""
    import nbformat

    student = path.stem
    zero = {q: 0.0 for q in points}
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as err:
        return Grade(student, zero, [f"not a Jupyter notebook ({type(err).__name__}): submit the .ipynb file "
                                     f"saved from Jupyter"])
    findings = audit(nb)
    if findings:
        return Grade(student, zero, ["integrity check failed, not graded; an instructor should review it: "
                                     + "; ".join(findings)])
    with zipfile.ZipFile(autograder) as zf:
        lab_config = {**json.loads(zf.read("lab.json")), **overrides}
        test_hashes = {n: _sha(zf.read(n)) for n in zf.namelist() if n.startswith("tests/")}
    nb.cells.insert(0, nbformat.v4.new_code_cell(harness_cell(lab_config)))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.setdefault("otter", {})["assignment_name"] = lab_config["name"]

    tmp = tempfile.TemporaryDirectory(prefix="grade-")
    ag_dir = Path(tmp.name) / "autograder"
    for sub in ("source", "submission", "results"):
        (ag_dir / sub).mkdir(parents=True)
    (ag_dir / "submission_metadata.json").write_text("{}")
    with zipfile.ZipFile(autograder) as zf:
        zf.extractall(ag_dir / "source")
    nbformat.write(nb, ag_dir / "submission" / f"{lab_config['name']}.ipynb")
    child = multiprocessing.get_context("fork").Process(
        target=_run_otter, args=(str(ag_dir), str(Path(tmp.name) / "otter.log")))
    child.start()
    now = time.monotonic()
    return _Job(student, path, tmp, child, now + timeout, test_hashes, now)


def _finish(job: _Job, points: dict, timed_out: bool) -> Grade:
    """Collect a finished (or killed) child's results; clean up."""
    import dill

    zero = {q: 0.0 for q in points}
    ag_dir = Path(job.tmp.name) / "autograder"
    log_path = Path(job.tmp.name) / "otter.log"
    try:
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
        if timed_out:
            return Grade(job.student, zero, [f"grading stopped after {job.deadline - job.started:.0f} s (the "
                                             f"whole notebook must run within this limit): look for an "
                                             f"infinite loop at the top level"], log)
        changed = sorted({name for name, digest in job.test_hashes.items() for where in ("source", "submission")
                          if (ag_dir / where / name).is_file()
                          and _sha((ag_dir / where / name).read_bytes()) != digest})
        if changed:
            return Grade(job.student, zero, ["integrity check failed: the notebook modified the grader's test "
                                             f"files ({', '.join(changed)}); an instructor should review it"])
        results_pkl = ag_dir / "results" / "results.pkl"
        if job.child.exitcode != 0 or not results_pkl.exists():
            tail = " / ".join(log.strip().splitlines()[-3:])
            return Grade(job.student, zero, [f"the grader failed on this notebook: {tail}"], log)
        with open(results_pkl, "rb") as f:
            results = dill.load(f)
    finally:
        job.tmp.cleanup()

    scores, notes, feedback = {}, [], [f"{job.student}: {job.path.name}", ""]
    for q, possible in points.items():
        test_file = results.results.get(q)
        if test_file is None:
            scores[q] = 0.0
            notes.append(f"{q}: not graded (the notebook stopped before the tests ran)")
            feedback.append(f"{q}: 0 / {possible:g}: not graded")
            continue
        scores[q] = round(float(test_file.score), 4)
        feedback.append(f"{q}: {scores[q]:g} / {possible:g}")
        for result in test_file.test_case_results:
            if result.passed:
                continue
            message = str(result.message).strip()
            feedback.append(textwrap.indent(message, "    "))
            for needle, note in (("reference implementation", "calls the reference"),
                                 ("did not finish within", "time limit")):
                if needle in message and f"{q}: {note}" not in notes:
                    notes.append(f"{q}: {note}")
    return Grade(job.student, scores, notes, "\n".join(feedback) + "\n")


def grade(submissions: Path, out: Path | None = None, lab: Lab | None = None, timeout: float | None = None,
          jobs: int = 1, test_timeout: float | None = None, cell_timeout: float | None = None) -> list[Grade]:
    """Grade every file in ``submissions`` (``jobs`` at a time); write grades.csv and feedback/."""
    import otter.run.run_autograder  # noqa: F401 (imported once here, inherited by every child)

    lab = lab or find_lab(None)
    if not lab.autograder.exists():
        raise SystemExit(f"{lab.autograder.relative_to(ROOT)} is missing: run `make labs` first")
    submissions = Path(submissions)
    if not submissions.is_dir():
        raise SystemExit(f"SUBMISSIONS={submissions} is not a folder: give the folder that holds the notebooks")
    out = Path(out) if out else submissions / "grades.csv"
    feedback_dir = out.parent / "feedback"
    skip = {out.resolve(), feedback_dir.resolve()}
    files = sorted(p for p in submissions.iterdir()
                   if p.resolve() not in skip and not p.name.startswith(".") and p.is_file())
    if not files:
        raise SystemExit(f"no submissions in {submissions}")
    points = questions(lab.autograder)
    overrides = {key: value for key, value in (("test_timeout", test_timeout), ("cell_timeout", cell_timeout))
                 if value}
    if timeout is None:   # a generous bound for the whole notebook: runaway code is stopped earlier, per cell
        timeout = 3 * (cell_timeout or lab.cell_timeout) + (test_timeout or lab.test_timeout) * 4 * len(points)
    feedback_dir.mkdir(parents=True, exist_ok=True)
    if jobs > 1:   # share the cores between the kernels: oversubscribed OpenMP threads spin and crawl
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // jobs)))

    # A notebook that overruns the whole-notebook limit is graded once more before it gets zero: runaway
    # code is stopped per cell and per test long before that limit, so an overrun most likely means the
    # grading machinery itself stalled (a kernel that never answered); its log is printed for diagnosis.
    grades, pending, running, stalled = {}, list(files), [], {}
    while pending or running:
        while pending and len(running) < max(1, jobs):
            path = pending.pop(0)
            started = _start(path, lab.autograder, points, timeout, overrides)
            if isinstance(started, Grade):
                grades[path] = _report(started, points, feedback_dir, 0.0)
            else:
                running.append(started)
        time.sleep(0.2)
        for job in list(running):
            timed_out = job.child.is_alive() and time.monotonic() > job.deadline
            if timed_out:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(job.child.pid, signal.SIGKILL)   # the child and its kernel
            if timed_out or not job.child.is_alive():
                job.child.join()
                running.remove(job)
                seconds = time.monotonic() - job.started
                if timed_out and job.path not in stalled:
                    log_path = Path(job.tmp.name) / "otter.log"
                    tail = log_path.read_text(errors="replace").splitlines()[-15:] if log_path.exists() else []
                    print(f"{job.student:>20s}: stopped after {seconds:.0f} s; grading it once more. The end of "
                          f"its grading log:\n" + textwrap.indent("\n".join(tail) or "(empty)", "    | "), flush=True)
                    job.tmp.cleanup()
                    stalled[job.path] = seconds
                    pending.insert(0, job.path)
                    continue
                grade = _finish(job, points, timed_out)
                if job.path in stalled:
                    grade.notes.append(f"graded twice: the first run stopped after {stalled[job.path]:.0f} s")
                grades[job.path] = _report(grade, points, feedback_dir, seconds)
    grades = [grades[path] for path in files]
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", *points, "total", "notes"])
        for g in grades:
            writer.writerow([g.student, *(f"{g.scores[q]:g}" for q in points), f"{sum(g.scores.values()):g}",
                             " | ".join(g.notes)])
    print(f"wrote {out} and {feedback_dir}/ (out of {sum(points.values()):g} points)")
    return grades


def _report(g: Grade, points: dict, feedback_dir: Path, seconds: float) -> Grade:
    total = sum(g.scores.values())
    (feedback_dir / f"{g.student}.txt").write_text(g.feedback or "\n".join([g.student, *g.notes]) + "\n")
    print(f"{g.student:>20s}: {total:g} / {sum(points.values()):g}  ({seconds:.0f} s)"
          + (f"  [{'; '.join(g.notes)}]" if g.notes else ""), flush=True)
    return g


# ----------------------------------------------------------------------------------------
# make release: stubs, copy, leak check.

def stub_source(source: str, functions: list[str], lab_name: str) -> str:
    """Replace the bodies of ``functions`` (names in this module) by a stub, keeping
    signatures and docstrings."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    targets = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    missing = set(functions) - set(targets)
    if missing:
        raise SystemExit(f"lab {lab_name}: cannot stub {sorted(missing)}: no such top-level function")
    for name in sorted(functions, key=lambda n: -targets[n].lineno):   # bottom-up keeps line numbers valid
        node = targets[name]
        body = node.body
        has_doc = isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str)
        first = body[1] if has_doc and len(body) > 1 else (None if has_doc else body[0])
        indent = " " * (body[0].col_offset)
        stub = (f"{indent}raise {STUB_ERROR}({name!r}, {lab_name!r})\n")
        start = (first.lineno - 1) if first is not None else node.end_lineno
        end = node.end_lineno
        lines[start:end] = [stub]
    text = "".join(lines)
    if STUB_ERROR not in source:
        text = _add_stub_import(text)
    return text


def _add_stub_import(text: str) -> str:
    tree = ast.parse(text)
    after = 0
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) or (
                isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant)):
            after = node.end_lineno
        else:
            break
    lines = text.splitlines(keepends=True)
    lines.insert(after, f"from sslcourse.exercises import {STUB_ERROR}\n")
    return "".join(lines)


STUB_MODULE = '''"""Lab exercises: library functions that you write in the labs.

In this release, a few functions of the library are stubs: the labs ask you to write
them. Calling one raises the error below, which names the lab. Once you have written the
function in the lab notebook, pass your own version where the library asks for one
(for example ``build_method("simclr", backbone, loss_fn=my_nt_xent)``).
"""


class ExerciseNotDone(NotImplementedError):
    """Raised by a library function that a lab asks you to implement."""

    def __init__(self, function: str, lab: str):
        self.function, self.lab = function, lab
        super().__init__(
            f"{function}() is an exercise: implement this in lab {lab} (labs/{lab}/{lab}.ipynb), "
            f"then pass your own function where the library needs it.")
'''


def release(out: Path = RELEASE, archive: bool = True) -> Path:
    """Assemble the student release in ``out``; return its path. Fails on any leak."""
    labs = all_labs()
    for lab in labs:
        if not lab.student_notebook.exists():
            raise SystemExit(f"{lab.student_notebook.relative_to(ROOT)} is missing: run `make labs` first")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "*.egg-info", "runs")
    shutil.copytree(ROOT / "sslcourse", out / "sslcourse", ignore=ignore)
    if (ROOT / "lectures").is_dir():
        shutil.copytree(ROOT / "lectures", out / "lectures", ignore=ignore)
    for name in ("pyproject.toml", "Makefile", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, out / name)
    readme = (ROOT / "README.md").read_text()       # students get it without the instructors' section
    (out / "README.md").write_text(re.split(r"^## For instructors\s*$", readme, flags=re.MULTILINE)[0].rstrip() + "\n")
    (out / "data").mkdir()
    if (ROOT / "data" / "README.md").exists():
        shutil.copy(ROOT / "data" / "README.md", out / "data" / "README.md")
    (out / "sslcourse" / "exercises.py").write_text(STUB_MODULE)

    by_module: dict[str, list[tuple[str, str]]] = {}
    for lab in labs:
        for qualname in lab.students_write:
            module, _, function = qualname.rpartition(".")
            by_module.setdefault(module, []).append((function, lab.name))
        (out / "labs" / lab.name).mkdir(parents=True)
        shutil.copy(lab.student_notebook, out / "labs" / lab.name / lab.student_notebook.name)
    for module, items in by_module.items():
        path = out / Path(*module.split(".")).with_suffix(".py")
        for lab_name in {lab_name for _, lab_name in items}:
            path.write_text(stub_source(path.read_text(), [f for f, l in items if l == lab_name], lab_name))

    hits = leak_check(out)
    if hits:
        raise SystemExit("the release leaks solutions or hidden tests:\n  " + "\n  ".join(hits))
    if archive:
        shutil.make_archive(str(out), "zip", out.parent, out.name)
        print(f"release: {out}/ and {out.name}.zip; leak check passed")
    return out


def _normalise(line: str) -> str:
    return re.sub(r"\s+", "", line)


def _distinctive(lines, min_chars: int = 24) -> set[str]:
    """Code lines long enough to identify their source when found elsewhere (whitespace removed).

    Comments, docstring quotes, imports, ``def`` lines and input checks are skipped: they
    say what is asked, not how it is done.
    """
    keep = set()
    for line in lines:
        line = line.strip()
        if line.startswith(("#", '"""', "'''", "def ", "import ", "from ")):
            continue
        if re.match(r"(\w+\s*=\s*)?check_\w+\(", line):    # input validation, shared by many functions
            continue
        norm = _normalise(line)
        if len(norm) >= min_chars:
            keep.add(norm)
    return keep


def secrets() -> dict[str, set[str]]:
    """What must never reach students: per origin, the distinctive lines."""
    import nbformat

    found: dict[str, set[str]] = {}
    stubbed: dict[Path, set[int]] = {}   # library file -> line numbers of the bodies that become stubs
    for lab in all_labs():
        nb = nbformat.read(lab.master, as_version=4)
        solution, hidden = [], []
        block = []                       # stack of open otter blocks
        for cell in nb.cells:
            first = cell.source.strip().splitlines()[0].strip().upper() if cell.source.strip() else ""
            if cell.cell_type == "raw" and first.startswith("# BEGIN "):
                block.append(first[len("# BEGIN "):])
                continue
            if cell.cell_type == "raw" and first.startswith("# END "):
                block.pop() if block else None
                continue
            if block and block[-1] == "SOLUTION":
                inside, lines = False, []
                for line in cell.source.splitlines():
                    if "# END SOLUTION" in line:
                        inside = False
                    if inside or line.rstrip().endswith("# SOLUTION"):
                        lines.append(line.replace("# SOLUTION", ""))
                    if "# BEGIN SOLUTION" in line:
                        inside = True
                solution += lines if "# BEGIN SOLUTION" in cell.source or "# SOLUTION" in cell.source \
                    else cell.source.splitlines()
            elif block and block[-1] == "TESTS" and cell.cell_type == "code" and \
                    re.search(r"hidden:\s*true", cell.source, re.IGNORECASE):
                hidden += cell.source.split("# END TEST CONFIG")[-1].splitlines()
        found[f"{lab.name} solutions"] = _distinctive(solution)
        found[f"{lab.name} hidden tests"] = _distinctive(hidden)
        for qualname in lab.students_write:
            module, _, function = qualname.rpartition(".")
            path = ROOT / Path(*module.split(".")).with_suffix(".py")
            source = path.read_text()
            node = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == function)
            body = node.body[1:] if isinstance(node.body[0], ast.Expr) else node.body
            lines = source.splitlines()[body[0].lineno - 1:node.end_lineno] if body else []
            stubbed.setdefault(path, set()).update(range(body[0].lineno, node.end_lineno + 1) if body else ())
            found[f"{lab.name} reference {qualname}"] = _distinctive(lines)
    # A reference line that the library also has outside every stubbed body ships to students anyway
    # (``n, _, height, width = images.shape``): it gives nothing away, so it is not searched for.
    shipped = set()
    for path in (ROOT / "sslcourse").rglob("*.py"):
        skip = stubbed.get(path, set())
        shipped |= _distinctive(line for number, line in enumerate(path.read_text().splitlines(), 1)
                                if number not in skip)
    return {origin: lines - shipped if " reference " in origin else lines for origin, lines in found.items()}


def _release_texts(folder: Path):
    """(relative path, text) for every text in the release, notebooks cell by cell, zips inside."""
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        rel = str(path.relative_to(folder))
        data = path.read_bytes()
        if path.suffix == ".zip":
            yield rel, "zip archive inside the release"
            continue
        try:
            text = data.decode()
        except UnicodeDecodeError:
            continue
        if path.suffix == ".ipynb":
            nb = json.loads(text)
            parts = [json.dumps(nb.get("metadata", {}))]
            for cell in nb.get("cells", []):
                parts.append(_joined(cell.get("source", "")))
                for output in cell.get("outputs", []):
                    parts.append(_joined(output.get("text", "")))
                    parts += [_joined(v) for v in output.get("data", {}).values() if isinstance(v, (str, list))]
            text = "\n".join(parts)
        yield rel, text


def _joined(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def leak_check(folder: Path) -> list[str]:
    """Every solution line, hidden test line and reference body line found in ``folder``."""
    hits = []
    # Whole words of a file name: super_resolution.py is a library module, not a solution.
    forbidden_files = re.compile(r"(?<![a-z])(autograder|master|solutions?|hidden)(?![a-z])", re.IGNORECASE)
    markers = ("# BEGIN SOLUTION", "# END SOLUTION", "# BEGIN TESTS", "BEGIN TEST CONFIG", "hidden: true",
               "ASSIGNMENT CONFIG", "otter_assign_solution_cell")
    lines_by_origin = secrets()
    for rel, text in _release_texts(folder):
        if forbidden_files.search(Path(rel).name):
            hits.append(f"{rel}: this file should not be in a student release")
        if text == "zip archive inside the release":
            hits.append(f"{rel}: {text}")
            continue
        if Path(rel).suffix in (".ipynb", ".py"):
            for marker in markers:
                if marker.lower() in text.lower():
                    hits.append(f"{rel}: contains the otter marker {marker!r}")
        normalised = {_normalise(line) for line in text.splitlines()}
        for origin, lines in lines_by_origin.items():
            for line in sorted(lines):
                if line in normalised:
                    hits.append(f"{rel}: contains a line of the {origin}: {line[:70]}")
    return hits


# ----------------------------------------------------------------------------------------
# Command line.

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build student notebooks and autograder bundles (make labs)")
    g = sub.add_parser("grade", help="grade every notebook in a folder (make grade SUBMISSIONS=dir)")
    g.add_argument("submissions", type=Path)
    g.add_argument("--lab", default=None, help="lab name or number, if several labs exist")
    g.add_argument("--out", type=Path, default=None, help="CSV to write (default: SUBMISSIONS/grades.csv)")
    g.add_argument("--timeout", type=float, default=None, help="seconds for one whole submission")
    g.add_argument("--test-timeout", type=float, default=None, help="seconds for one test case (default: lab.toml)")
    g.add_argument("--cell-timeout", type=float, default=None, help="seconds for one cell (default: lab.toml)")
    g.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default 1)")
    r = sub.add_parser("release", help="assemble the student release and check it for leaks (make release)")
    r.add_argument("--out", type=Path, default=RELEASE)
    c = sub.add_parser("check-release", help="search a release folder for solutions and hidden tests")
    c.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "build":
        build()
    elif args.command == "grade":
        grade(args.submissions, args.out, find_lab(args.lab), args.timeout, args.jobs, args.test_timeout,
              args.cell_timeout)
    elif args.command == "release":
        release(args.out.resolve())
    elif args.command == "check-release":
        hits = leak_check(args.folder)
        print("\n".join(hits) if hits else "no leak found")
        return 1 if hits else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
