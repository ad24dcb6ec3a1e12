"""The dependency pins live in requirements.txt; environment.yml, install.sh and
.ci/run must agree with it."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_pyproject_declares_the_requirements_pins():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = sorted(project["dependencies"] + project["optional-dependencies"]["test"])
    assert declared == _requirements()
    assert set(project["scripts"]) == {"clsearch-search", "clsearch-rerun", "clsearch-report"}


@pytest.mark.slow
def test_installed_commands_run_and_write_under_the_working_directory(tmp_path):
    """pip-install the project (its own files, no dependencies: the test's venv
    has them), then run the installed commands from another folder: they work
    without the repository on the path, and results land under the working
    directory, not inside site-packages."""
    src, site, work = tmp_path / "src", tmp_path / "site", tmp_path / "work"
    src.mkdir()
    for name in ("pyproject.toml", "core", "datasets", "strategies", "search", "analysis"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(
            ROOT / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if (ROOT / name).is_dir() else {}))
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--target", str(site), str(src)], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr[-2000:]
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "RAY_AUTH_MODE": "disabled"}
    helped = subprocess.run([str(site / "bin" / "clsearch-report"), "--help"], capture_output=True, text=True,
                            timeout=120, cwd=work, env=env)
    assert helped.returncode == 0 and "usage" in helped.stdout
    run = subprocess.run([str(site / "bin" / "clsearch-rerun"), "--method", "finetune", "--dataset", "synthetic",
                          "--epochs", "1", "--threads", "1", "--quiet"], capture_output=True, text=True,
                         timeout=300, cwd=work, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    written = list((work / "results").glob("direct-finetune-*/seed0/result.json"))
    assert len(written) == 1
    assert not list(site.glob("results")) and not list(site.glob("*/results"))
