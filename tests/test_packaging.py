"""The conda environment and pyproject.toml must list the same dependencies."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower()


def pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return {normalise(r) for r in project["dependencies"] + extras}


def environment_requirements() -> tuple[set[str], str]:
    text = (ROOT / "environment.yml").read_text()
    pip_block = text.split("- pip:", 1)[1]
    pip = {normalise(m) for m in re.findall(r"^\s+-\s+(\S.*)$", pip_block, flags=re.M)}
    python = re.search(r"-\s*python=(\S+)", text).group(1)
    return pip, python


def test_environment_yml_agrees_with_pyproject():
    pip, _ = environment_requirements()
    ours = pyproject_requirements()
    assert pip == ours, f"only in environment.yml: {sorted(pip - ours)}; only in pyproject.toml: {sorted(ours - pip)}"


def test_python_version_is_allowed_by_pyproject():
    _, python = environment_requirements()
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(p) for p in requires.removeprefix(">=").split("."))
    assert tuple(int(p) for p in python.split(".")) >= minimum


def test_torch_is_pinned_exactly():
    """An open torch requirement makes pip fetch a multi-GB build; both files pin it."""
    for req in pyproject_requirements():
        if req.startswith(("torch", "torchvision")):
            assert "==" in req, req
