"""The Python the app runs on in Azure (issue 28 item 4).

The Flex Consumption plan lists Python 3.10, 3.11 and 3.12, not 3.13 (infra/README.md, "Python
version"): main.bicep deploys 3.12 by default, the project declares and type-checks 3.12 as its
oldest Python, and `make test` runs the unit tests on 3.12 as well as the whole suite on 3.13.
"""

from __future__ import annotations

import re
import tomllib

from test_templates import INFRA, REPO, main

DEPLOYED = main()["parameters"]["pythonVersion"]["default"]


def test_the_deployed_python_is_one_flex_consumption_lists():
    declared = main()["parameters"]["pythonVersion"]
    allowed = next(d["argument"] for d in declared["decorators"] if d["type"] == "allowed")
    assert DEPLOYED == "3.12"
    assert DEPLOYED in allowed and set(allowed) <= {"3.12", "3.13"}, "the app needs 3.12 or later"


def test_the_project_is_checked_for_the_deployed_python():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["requires-python"] == f">={DEPLOYED}"
    assert project["tool"]["mypy"]["python_version"] == DEPLOYED, "mypy must flag 3.13-only APIs"
    assert project["tool"]["ruff"]["target-version"] == "py" + DEPLOYED.replace(".", "")


def test_ci_runs_the_unit_tests_on_the_deployed_python():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    # after `make test` (kept under ten minutes on a fresh machine), as a step of its own
    steps = [line.strip() for line in ci.splitlines() if line.strip().startswith("make ")]
    assert steps == ["make test", "make unit-3.12"]
    assert f"tools/find-python {DEPLOYED}" in makefile
    assert re.search(r"^unit-3\.12: .*\n\t\$\(VENV312\)/bin/python -m pytest .*tests/unit$", makefile, re.M)


def test_the_requirements_install_on_both_pythons():
    text = (REPO / "requirements.txt").read_text(encoding="utf-8")
    # azure-functions 2.x and the 3.13+ worker (azure-functions-runtime) need Python 3.13
    assert re.search(r'^azure-functions==2\.[\d.]+; python_version >= "3\.13"', text, re.M)
    assert re.search(r'^azure-functions==1\.[\d.]+; python_version < "3\.13"', text, re.M)
    assert re.search(r'^azure-functions-runtime==[\d.]+; python_version >= "3\.13"', text, re.M)
    assert "Python version" in (INFRA / "README.md").read_text(encoding="utf-8")
