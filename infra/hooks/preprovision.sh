#!/bin/sh
# azd preprovision hook: stop before anything is created when the environment is incomplete,
# and make the Entra ID app registration on the first run (its client id becomes
# AUTH_CLIENT_ID, which infra/main.parameters.json passes as authClientId).
# azd gives the hook the environment's values (azd env set NAME VALUE) as variables.
set -eu

missing=""
need() {
  if [ -z "$2" ]; then
    missing="$missing $1"
  fi
}
need AZURE_RESOURCE_GROUP "${AZURE_RESOURCE_GROUP:-}"
need CMK_VAULT_NAME "${CMK_VAULT_NAME:-}"
need CMK_VAULT_RESOURCE_GROUP "${CMK_VAULT_RESOURCE_GROUP:-}"
if [ -n "$missing" ]; then
  echo "preprovision: set these first, with 'azd env set NAME VALUE':$missing" >&2
  echo "preprovision: see infra/README.md, 'One command: azd up'" >&2
  exit 1
fi

if [ -z "${AUTH_CLIENT_ID:-}" ]; then
  here="$(cd "$(dirname "$0")" && pwd)"
  echo "preprovision: no AUTH_CLIENT_ID yet: creating the app registration"
  client_id="$(bash "$here/../scripts/create-entra-app.sh" "cmk-rotation-${AZURE_ENV_NAME:-default}" "${OPERATOR_GROUP_ID:-}")"
  azd env set AUTH_CLIENT_ID "$client_id"
  echo "preprovision: AUTH_CLIENT_ID=$client_id"
fi
