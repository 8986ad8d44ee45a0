"""The project's own files install and test it: the README's commands, CI, and the two dependency lists."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_torch = [d.replace("pytorch-cpu", "torch") for d in env["dependencies"] if str(d).startswith("pytorch")]
    listed = [r for r in pip_list if not r.startswith("-e")] + conda_torch
    assert sorted(listed) == sorted(wanted), "environment.yml and pyproject.toml disagree (versions included)"
    assert conda_torch and not any(_name(r) == "torch" for r in pip_list), "torch from pip is PyPI's CUDA build"
    assert "-e .[dev]" in pip_list
    assert {_name(r) for r in wanted} >= {"torch", "transformers", "datasets", "matplotlib", "ipywidgets",
                                          "jupyterlab", "nbval", "peft", "safetensors", "tqdm"}


def test_transformers_has_a_tested_upper_bound():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert re.search(r"transformers>=5[.\d]*,<5\.\d+", " ".join(deps))


def test_ci_calls_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make course" in readme
    commands = [line for line in ci.splitlines() if line.strip() and not line.startswith("#")]
    assert commands[-1].strip() == "make test"


def test_setup_installs_torch_before_the_package():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert setup.index("torch==2.13.0") < setup.index('install -e ".[dev]"')
