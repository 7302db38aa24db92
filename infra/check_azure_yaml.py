"""Offline check of azure.yaml (`azd up`), run by infra/check.sh from .venv-checkov.

No azd and no network here, so this checks what azd would trip over first:
- the file matches tests/infra/azure-yaml.schema.json (the required keys and the host,
  language and hook names azd documents; written for this project, not azd's own file);
- every path it names exists: the Bicep module and its parameters file, the service
  project with the files a Python function app needs, each hook script;
- each hook is executable, starts with the shebang of its `shell`, and passes shellcheck in
  that dialect;
- every ${VAR} that main.parameters.json needs without a default is named in infra/README.md.

Usage: python infra/check_azure_yaml.py [--repo DIR] [--shellcheck PATH]
Exit 0 with one "ok" line, or 1 with one line per problem.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA = Path("tests/infra/azure-yaml.schema.json")
SHEBANGS = {"sh": "#!/bin/sh", "pwsh": "#!/usr/bin/env pwsh"}
PYTHON_FUNCTION_FILES = ("function_app.py", "requirements.txt", "host.json")


def schema_problems(doc: Any, schema: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"azure.yaml {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]


def infra_problems(repo: Path, infra: dict[str, Any]) -> list[str]:
    folder = repo / infra["path"]
    module = folder / f"{infra['module']}.bicep"
    params = folder / f"{infra['module']}.parameters.json"
    problems = [f"infra: {p.relative_to(repo)} does not exist" for p in (module, params) if not p.is_file()]
    if problems:
        return problems
    declared = set(re.findall(r"^param (\w+) ", module.read_text(encoding="utf-8"), re.M))
    given = json.loads(params.read_text(encoding="utf-8"))["parameters"]
    problems += [
        f"infra: {params.name} sets {k}, which {module.name} does not declare"
        for k in given
        if k not in declared
    ]
    readme = (folder / "README.md").read_text(encoding="utf-8") if (folder / "README.md").is_file() else ""
    needed = set(re.findall(r"\$\{([A-Z0-9_]+)\}", params.read_text(encoding="utf-8")))
    problems += [
        f"infra: {params.name} needs ${{{v}}}, which infra/README.md does not name"
        for v in sorted(needed)
        if v not in readme
    ]
    return problems


def service_problems(repo: Path, name: str, service: dict[str, Any]) -> list[str]:
    project = repo / service["project"]
    if not project.is_dir():
        return [f"service {name}: project {service['project']} is not a folder"]
    if service["host"] == "function" and service["language"] in ("py", "python"):
        return [
            f"service {name}: {f} missing in {service['project']}"
            for f in PYTHON_FUNCTION_FILES
            if not (project / f).is_file()
        ]
    return []


def hook_commands(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, {run, shell}) for every hook, project and service level, posix and windows."""
    found = []
    scopes = [("", doc.get("hooks") or {})]
    scopes += [(f"service {n} ", s.get("hooks") or {}) for n, s in (doc.get("services") or {}).items()]
    for prefix, hooks in scopes:
        for event, hook in hooks.items():
            if "run" in hook:
                found.append((f"{prefix}{event}", hook))
            for platform in ("posix", "windows"):
                if platform in hook:
                    found.append((f"{prefix}{event} ({platform})", hook[platform]))
    return found


def hook_problems(repo: Path, label: str, hook: dict[str, Any], shellcheck: str) -> list[str]:
    script = repo / hook["run"]
    if not script.is_file():
        return [f"hook {label}: {hook['run']} does not exist"]
    problems = []
    if not os.access(script, os.X_OK):
        problems.append(f"hook {label}: {hook['run']} is not executable (chmod +x, and commit the mode)")
    shell = hook.get("shell", "sh")
    first = script.read_text(encoding="utf-8").splitlines()[:1]
    if first != [SHEBANGS[shell]]:
        problems.append(f"hook {label}: {hook['run']} must start with {SHEBANGS[shell]} (shell: {shell})")
    if shell == "sh":
        # shellcheck is our own pinned binary; the script path comes from our azure.yaml
        cmd = [shellcheck, "-s", "sh", str(script)]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode != 0:
            problems.append(f"hook {label}: shellcheck found problems:\n{result.stdout.strip()}")
    return problems


def check(repo: Path, shellcheck: str) -> list[str]:
    path = repo / "azure.yaml"
    if not path.is_file():
        return ["azure.yaml does not exist"]
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        return [f"azure.yaml is not YAML: {exc}"]
    schema = json.loads((repo / SCHEMA).read_text(encoding="utf-8"))
    problems = schema_problems(doc, schema)
    if problems:
        return problems
    problems += infra_problems(repo, doc["infra"])
    for name, service in doc["services"].items():
        problems += service_problems(repo, name, service)
    for label, hook in hook_commands(doc):
        problems += hook_problems(repo, label, hook, shellcheck)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--shellcheck", default="shellcheck")
    args = parser.parse_args(argv)
    problems = check(args.repo.resolve(), args.shellcheck)
    for problem in problems:
        print(f"azure-yaml-check: {problem}", file=sys.stderr)
    if problems:
        return 1
    print("azure-yaml-check: ok: azure.yaml matches the schema, its paths exist, its hooks pass shellcheck")
    return 0


if __name__ == "__main__":
    sys.exit(main())
