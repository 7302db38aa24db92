#!/bin/sh
# azd postprovision hook: grant the function identity its Managed HSM role on every pool in
# managedHsms. HSM roles live in the HSM's own data plane, which ARM (and so Bicep) cannot
# write; infra/scripts/grant-hsm-role.sh does it and is idempotent.
# azd exposes the deployment outputs as upper-cased variables: MANAGEDHSMNAMES is a JSON array.
set -eu

pools="$(printf '%s' "${MANAGEDHSMNAMES:-[]}" | python3 -c 'import json, sys; print(" ".join(json.load(sys.stdin)))')"
if [ -z "$pools" ]; then
  exit 0
fi
if [ -z "${IDENTITYPRINCIPALID:-}" ]; then
  echo "postprovision: the deployment has no identityPrincipalId output" >&2
  exit 1
fi
here="$(cd "$(dirname "$0")" && pwd)"
for pool in $pools; do
  bash "$here/../scripts/grant-hsm-role.sh" "$pool" "$IDENTITYPRINCIPALID" ServicePrincipal
done
