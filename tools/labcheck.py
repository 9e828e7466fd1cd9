"""Grading helpers for the labs' hidden tests. Instructors only: never shipped to students.

`make labs` copies this file into every autograder bundle, so that it sits next to the
submission when `make grade` runs it. Two users:

* **Hidden tests** in a master notebook compare a student's function with the library's
  reference on seeded random inputs::

      import labcheck
      labcheck.compare(student_fn, "sslcourse.losses.nt_xent.nt_xent", cases)

* **The grading harness**: `tools/labs.py grade` puts a cell calling :func:`install`
  at the top of every submission, before any student code. It makes otter run every
  test once, at the end, against the notebook's final state (a student's own
  ``grader.check(...)`` calls, edited or not, count for nothing), bounds every test
  and every cell in time, and arms *tripwires* on the reference implementations the
  lab asks students to write: a question whose tests reach one of them scores zero.
"""
import ast
import contextlib
import importlib
import inspect
import signal
import textwrap

import torch

# qualified name -> (function object, its real code): filled by install() or forbid()
_GUARDED: dict = {}
# qualified names of references that student code called while the tripwires were armed
TRIPPED: list = []
_ARMED = False


class ReferenceCallError(RuntimeError):
    """A student's answer called the library's reference implementation."""


class TestTimeout(TimeoutError):
    """A test or a cell ran past its time limit."""


# ----------------------------------------------------------------------------------------
# Time limits (SIGALRM: the kernel runs cells in its main thread).

@contextlib.contextmanager
def time_limit(seconds: float, what: str = "this test"):
    """Raise :class:`TestTimeout` in the block after ``seconds``; the outer timer is paused."""
    if not seconds or seconds <= 0:
        yield
        return

    def on_alarm(signum, frame):
        raise TestTimeout(f"{what} did not finish within {seconds:g} s: look for an infinite loop, "
                          f"or a computation much slower than it needs to be")

    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    outer_remaining, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if outer_remaining > 0:          # resume the cell's clock where it stopped
            signal.setitimer(signal.ITIMER_REAL, outer_remaining)


# ----------------------------------------------------------------------------------------
# Tripwires on the reference implementations.

def _resolve(qualname: str):
    module_name, _, attr = qualname.rpartition(".")
    fn = getattr(importlib.import_module(module_name), attr)
    if not inspect.isfunction(fn):
        raise TypeError(f"{qualname} is not a plain Python function, so it cannot be guarded")
    return fn


def _tripwire(*args, **kwargs):
    # Runs with the *guarded* function's globals, so it imports what it needs.
    name = __import__("sys")._getframe().f_code.co_qualname
    labcheck = __import__("labcheck")
    labcheck.TRIPPED.append(name)
    raise labcheck.ReferenceCallError(
        f"this answer calls the library's reference implementation {name}(): the lab asks you to "
        f"write it yourself, so this question scores 0. Replace the call with your own computation.")


def guard(qualnames) -> None:
    """Register the reference functions that student answers must not call.

    A decorated reference (``@torch.no_grad()``) is guarded through the function it wraps:
    the decorator's wrapper is a closure, whose code cannot be swapped for the tripwire's.
    """
    for qualname in qualnames:
        if qualname not in _GUARDED:
            fn = _resolve(qualname)
            inner = inspect.unwrap(fn)
            _GUARDED[qualname] = (fn, inner, inner.__code__)


def _set_tripwires(on: bool) -> None:
    global _ARMED
    for qualname, (_, inner, code) in _GUARDED.items():
        inner.__code__ = _tripwire.__code__.replace(co_name=code.co_name, co_qualname=qualname) if on else code
    _ARMED = on


@contextlib.contextmanager
def armed():
    """Inside the block, calling any guarded reference raises ReferenceCallError.

    The tripwire replaces the function's code object, so it also catches aliases such as
    ``from sslcourse.losses import nt_xent as mine``.
    """
    was_armed = _ARMED
    _set_tripwires(True)
    try:
        yield
    finally:
        _set_tripwires(was_armed)


@contextlib.contextmanager
def disarmed():
    """Run the block with the real references (hidden tests compute expected values here)."""
    was_armed = _ARMED
    _set_tripwires(False)
    try:
        yield
    finally:
        _set_tripwires(was_armed)


def reference(qualname: str):
    """The library's reference implementation, callable even while the tripwires are armed."""
    guard([qualname])
    fn = _GUARDED[qualname][0]

    def call(*args, **kwargs):
        with disarmed():
            return fn(*args, **kwargs)
    call.__name__ = call.__qualname__ = qualname
    return call


# ----------------------------------------------------------------------------------------
# Checks used by hidden tests.

def require_function(fn, name: str):
    if fn is None:
        raise AssertionError(f"no function named {name} was found: run the cell that defines it, "
                             f"and keep the name given in the lab")
    if not callable(fn):
        raise AssertionError(f"{name} should be a function, got {type(fn).__name__}")


def has_python_loop(fn) -> bool:
    """Whether ``fn``'s source contains a for/while loop or a comprehension."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    loops = (ast.For, ast.AsyncFor, ast.While, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
    return any(isinstance(node, loops) for node in ast.walk(tree))


def random_inputs(shapes, seed: int, dtype=torch.float64):
    """Seeded standard-normal tensors that require gradients."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(True) for shape in shapes]


def compare(student_fn, reference_qualname: str, cases, name: str | None = None,
            atol: float = 1e-6, rtol: float = 1e-5, grads: bool = True) -> None:
    """Check values (and input gradients) of ``student_fn`` against the reference.

    ``cases`` is a list of ``(args, kwargs)``; tensors among ``args`` are cloned for each
    side, so each gets its own gradients. Raises AssertionError with what differs.
    """
    name = name or reference_qualname.rpartition(".")[2]
    require_function(student_fn, name)
    ref = reference(reference_qualname)
    for args, kwargs in cases:
        shapes = ", ".join(str(tuple(a.shape)) for a in args if isinstance(a, torch.Tensor))
        extra = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        where = f"{name} on inputs of shape {shapes}" + (f" with {extra}" if extra else "")
        mine = [a.detach().clone().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a
                for a in args]
        theirs = [a.detach().clone().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a
                  for a in args]
        expected = ref(*theirs, **kwargs)
        got = student_fn(*mine, **kwargs)
        if not isinstance(got, torch.Tensor):
            raise AssertionError(f"{where}: should return a torch.Tensor, got {type(got).__name__}")
        if got.shape != expected.shape:
            raise AssertionError(f"{where}: returned shape {tuple(got.shape)}, expected {tuple(expected.shape)}")
        if not torch.allclose(got.detach().to(expected.dtype), expected.detach(), atol=atol, rtol=rtol):
            diff = (got.detach().to(expected.dtype) - expected.detach()).abs().max().item()
            raise AssertionError(f"{where}: values differ from the expected ones (max abs difference {diff:.3g})")
        if not grads:
            continue
        if not got.requires_grad:
            raise AssertionError(f"{where}: the result carries no gradient; do not detach it, use "
                                 f"torch operations only (no .numpy(), .item() or torch.no_grad())")
        weights = torch.linspace(0.5, 1.5, got.numel(), dtype=got.dtype).reshape(got.shape)
        (got * weights).sum().backward()
        (expected * weights.to(expected.dtype)).sum().backward()
        for i, (a, b) in enumerate(zip(mine, theirs)):
            if isinstance(a, torch.Tensor) and a.requires_grad:
                if a.grad is None or not torch.allclose(a.grad, b.grad, atol=atol * 10, rtol=rtol * 10):
                    raise AssertionError(f"{where}: the gradient with respect to argument {i + 1} "
                                         f"differs from the expected one")


# ----------------------------------------------------------------------------------------
# The grading harness.

def install(forbidden=(), test_timeout: float = 60, cell_timeout: float = 600) -> None:
    """Called once by the grading harness cell, before any student code runs."""
    from otter.check.notebook import Notebook
    from otter.test_files.abstract_test import TestCaseResult
    from otter.test_files.exception_test import ExceptionTestFile, test_case

    guard(forbidden)

    # 1. A student's own grader.check() calls do nothing while grading: the grader runs
    #    every test itself at the end of the notebook, so edited or redefined checks,
    #    or checks run against a doctored environment, cannot count.
    def check_during_grading(self, question, global_env=None):
        print(f"(grading: the tests of {question} run at the end of the notebook)")
    Notebook.check = check_during_grading
    Notebook.check_all = lambda self: None

    # 2. Each test case gets a time limit.
    #    (Same body as otter's test_case.call_func, so that otter's error messages still
    #    point at the failing line of the test.)
    def call_with_limit(self, global_environment):
        kwargs = {arg: (global_environment if arg == "env" else global_environment.get(arg, None))
                  for arg in self._get_func_params()}
        with time_limit(test_timeout, f"the test {self.name or ''}".strip()):
            self.test_func(**kwargs)
    test_case.call_func = call_with_limit

    # 3. Tripwires on the references while a question's tests run; a trip zeroes the question.
    original_run = ExceptionTestFile.run

    def run_with_tripwires(self, global_environment):
        before = len(TRIPPED)
        with armed():
            original_run(self, global_environment)
        calls = sorted(set(TRIPPED[before:]))
        if calls:
            message = (f"❌ {self.name} scores 0: the answer calls the library's reference implementation "
                       f"({', '.join(calls)}) instead of computing the result itself.")
            self.test_case_results = [TestCaseResult(test_case=r.test_case, message=message, passed=False)
                                      for r in self.test_case_results]
    ExceptionTestFile.run = run_with_tripwires

    # 4. Every student cell gets a time limit, so a runaway loop costs one cell, not the run.
    try:
        ip = get_ipython()  # noqa: F821 (defined inside IPython kernels)
    except NameError:
        return

    def on_alarm(signum, frame):
        raise TestTimeout(f"this cell did not finish within {cell_timeout:g} s while grading: "
                          f"look for an infinite loop")

    def arm_cell(*_):
        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, cell_timeout)

    def disarm_cell(*_):
        signal.setitimer(signal.ITIMER_REAL, 0)

    ip.events.register("pre_run_cell", arm_cell)
    ip.events.register("post_run_cell", disarm_cell)
