"""The dependency pins live in requirements.txt; environment.yml, install.sh and
.ci/run must agree with it."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return sorted(l.strip() for l in lines if l.strip() and not l.strip().startswith("#"))


def _environment_pip() -> list[str]:
    pins, in_pip = [], False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        stripped = line.strip()
        if stripped == "- pip:":
            in_pip = True
            continue
        if in_pip and stripped.startswith("- "):
            pins.append(stripped[2:].strip())
        elif in_pip and stripped and not stripped.startswith("#"):
            in_pip = False
    return sorted(pins)


def test_environment_yml_lists_the_same_pins_as_requirements():
    assert _requirements() == _environment_pip()


def test_torch_and_torchvision_are_pinned_together():
    reqs = _requirements()
    assert "torch==2.13.0" in reqs and "torchvision==0.28.0" in reqs
    for name in ("ray[tune]", "optuna", "pandas", "matplotlib", "seaborn", "pytest"):
        assert any(r.startswith(name + "==") for r in reqs), name


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_cmd = "bash install.sh && .venv/bin/python -m pytest -q"
    assert test_cmd in readme and test_cmd in ci
    assert "install.sh" in ci and "requirements.txt" in (ROOT / "install.sh").read_text()
