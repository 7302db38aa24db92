"""azure.yaml (`azd up`) checked offline (issue 16 item 3).

infra/check_azure_yaml.py runs from .venv-checkov (PyYAML, jsonschema and the pinned
shellcheck live there, apart from the test virtualenv); `make test` builds it in infra-check
before pytest runs. These tests run the checker on the real repository and on broken copies,
so a checker that passes everything fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_templates import INFRA, REPO, main

VENV = Path(os.environ.get("CHECKOV_VENV", REPO / ".venv-checkov"))
CHECKER = INFRA / "check_azure_yaml.py"
HOOKS = sorted((INFRA / "hooks").glob("*.sh"))


def _checker_python() -> Path:
    python, shellcheck = VENV / "bin" / "python", VENV / "bin" / "shellcheck"
    if not (python.exists() and shellcheck.exists()):
        pytest.skip(f"{VENV} not built: run `make infra-check` (make test does) first")
    return python


def run_checker(repo: Path) -> subprocess.CompletedProcess[str]:
    python = _checker_python()
    cmd = [str(python), str(CHECKER), "--repo", str(repo), "--shellcheck", str(VENV / "bin" / "shellcheck")]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The files the checker reads, copied so a test can break them."""
    for name in ("azure.yaml", "function_app.py", "requirements.txt", "host.json"):
        shutil.copy2(REPO / name, tmp_path / name)
    shutil.copytree(INFRA, tmp_path / "infra", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "tests" / "infra").mkdir(parents=True)
    shutil.copy2(REPO / "tests/infra/azure-yaml.schema.json", tmp_path / "tests/infra/azure-yaml.schema.json")
    return tmp_path


def test_the_repository_azure_yaml_passes():
    result = run_checker(REPO)
    assert result.returncode == 0, result.stderr
    assert "azure-yaml-check: ok" in result.stdout


def test_an_unknown_hook_name_fails(copy):
    path = copy / "azure.yaml"
    path.write_text(path.read_text().replace("  postdeploy:", "  afterdeploy:"))
    result = run_checker(copy)
    assert result.returncode == 1
    assert "afterdeploy" in result.stderr


def test_a_missing_hook_script_fails(copy):
    (copy / "infra/hooks/postdeploy.sh").unlink()
    result = run_checker(copy)
    assert result.returncode == 1
    assert "infra/hooks/postdeploy.sh does not exist" in result.stderr


def test_a_hook_that_is_not_executable_fails(copy):
    (copy / "infra/hooks/preprovision.sh").chmod(0o644)
    result = run_checker(copy)
    assert result.returncode == 1
    assert "preprovision.sh is not executable" in result.stderr


def test_a_hook_shellcheck_rejects_fails(copy):
    hook = copy / "infra/hooks/postprovision.sh"
    hook.write_text(hook.read_text() + '\nif [ $pools = "x" ]; then echo x; fi\n')
    result = run_checker(copy)
    assert result.returncode == 1
    assert "shellcheck found problems" in result.stderr and "SC2086" in result.stderr


def test_a_parameter_main_bicep_does_not_declare_fails(copy):
    params = copy / "infra/main.parameters.json"
    data = json.loads(params.read_text())
    data["parameters"]["deployEventSubscription"] = {"value": "true"}  # a typo azd would pass on
    params.write_text(json.dumps(data))
    result = run_checker(copy)
    assert result.returncode == 1
    assert "sets deployEventSubscription, which main.bicep does not declare" in result.stderr


def test_an_undocumented_environment_value_fails(copy):
    readme = copy / "infra/README.md"
    readme.write_text(readme.read_text().replace("CMK_VAULT_NAME", "THE_VAULT"))
    result = run_checker(copy)
    assert result.returncode == 1
    assert "${CMK_VAULT_NAME}, which infra/README.md does not name" in result.stderr


# ---------------------------------------------------------------- without the checker's venv
def test_hooks_are_committed_executable_with_a_posix_shebang():
    assert HOOKS, "no azd hooks under infra/hooks"
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-s", "infra/hooks", "infra/scripts"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    modes = {line.split("\t")[1]: line.split()[0] for line in listed}
    for hook in HOOKS:
        rel = str(hook.relative_to(REPO))
        if rel in modes:  # a fresh clone keeps the mode git has
            assert modes[rel] == "100755", f"{rel} is committed without the executable bit"
        assert hook.read_text().startswith("#!/bin/sh\n"), f"{rel}: azure.yaml runs it with shell: sh"


def test_azd_runs_pass_one_then_pass_two():
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert params["deployEventSubscriptions"]["value"] == "${DEPLOY_EVENT_SUBSCRIPTIONS=false}"
    assert main()["parameters"]["deployEventSubscriptions"]["default"] is False
    postdeploy = (INFRA / "hooks" / "postdeploy.sh").read_text()
    # pass 2 only once on_key_event exists, then provision again with the subscriptions
    code = "\n".join(line for line in postdeploy.splitlines() if not line.lstrip().startswith(("#", "echo")))
    order = [
        code.index('grep -q "on_key_event"'),
        code.index("azd env set DEPLOY_EVENT_SUBSCRIPTIONS true"),
        code.index("azd provision --no-prompt"),
    ]
    assert order == sorted(order)
    site_tags = (INFRA / "modules" / "function-app.bicep").read_text()
    assert "'azd-service-name': 'rotation'" in site_tags, "azd deploy finds the app by this tag"
