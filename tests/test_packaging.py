"""The set-up promises: pyproject and environment.yml agree, CI calls the README's command."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_environment_yml_matches_pyproject():
    project = _pyproject()
    wanted = project["dependencies"] + project["optional-dependencies"]["course"] \
        + project["optional-dependencies"]["test"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(map(str.strip, pip_section)) == sorted(map(str.strip, wanted)), \
        "environment.yml's pip section and pyproject's dependencies + [course,test] drifted apart"
    assert {_name(r) for r in pip_section} == {_name(r) for r in wanted}


def test_torch_is_pinned_everywhere():
    assert "torch==2.13.0" in _pyproject()["dependencies"]
    assert "torch==2.13.0" in (ROOT / "Makefile").read_text()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make course" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", ci, flags=re.M)
