#!/usr/bin/env bash
# Grants a principal the narrow key-rotation role on one Managed HSM pool.
#
#   bash infra/scripts/grant-hsm-role.sh <hsm-name> <principal-object-id> [ServicePrincipal|Group]
#
# Managed HSM keeps its own role-based access control in the data plane
# (https://<hsm>.managedhsm.azure.net/providers/Microsoft.Authorization/...): ARM and so Bicep
# cannot assign it, so main.bicep takes the pool names (managedHsms) for
# ROTATION_ALLOWED_VAULTS and this script makes the grant. No built-in HSM role fits: Crypto
# Officer manages roles, purge and export but no keys; Crypto User can also create, delete,
# import, back up and use keys. The custom role below reads keys and their rotation policy,
# rotates, and updates key properties (the expiry of a new version), nothing else.
# Needs `az login` as a Managed HSM Administrator (or Policy Administrator) of the pool.
# Idempotent: an existing role definition or assignment is reused.
set -euo pipefail

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 <hsm-name> <principal-object-id> [ServicePrincipal|Group]" >&2
  exit 2
fi
hsm="$1"
principal="$2"
principal_type="${3:-ServicePrincipal}"
role_name="CMK Rotation HSM Key Operator"
case "$principal_type" in
  ServicePrincipal | Group) ;;
  *)
    echo "principal type must be ServicePrincipal or Group, not $principal_type" >&2
    exit 2
    ;;
esac
if ! [[ "$hsm" =~ ^[a-zA-Z0-9-]{3,24}$ ]]; then
  echo "not a Managed HSM name: $hsm" >&2
  exit 2
fi
if ! [[ "$principal" =~ ^[0-9a-fA-F-]{36}$ ]]; then
  echo "not an object id: $principal" >&2
  exit 2
fi

definition='{
  "roleName": "CMK Rotation HSM Key Operator",
  "description": "Reads keys and rotation policies, rotates keys and updates key properties. Cannot create, delete, purge, export or use keys.",
  "actions": [],
  "notActions": [],
  "dataActions": [
    "Microsoft.KeyVault/managedHsm/keys/read/action",
    "Microsoft.KeyVault/managedHsm/keys/write/action",
    "Microsoft.KeyVault/managedHsm/keys/rotate/action"
  ],
  "notDataActions": []
}'

existing="$(az keyvault role definition list --hsm-name "$hsm" --custom-role-only true \
  --query "[?roleName=='$role_name'].name | [0]" -o tsv)"
if [ -z "$existing" ]; then
  az keyvault role definition create --hsm-name "$hsm" --role-definition "$definition" -o none
  echo "created role definition '$role_name' on $hsm"
fi

assigned="$(az keyvault role assignment list --hsm-name "$hsm" --scope /keys \
  --assignee-object-id "$principal" --role "$role_name" --query "length(@)" -o tsv)"
if [ "${assigned:-0}" = "0" ]; then
  az keyvault role assignment create --hsm-name "$hsm" --scope /keys --role "$role_name" \
    --assignee-object-id "$principal" --assignee-principal-type "$principal_type" -o none
  echo "assigned '$role_name' on $hsm/keys to $principal"
else
  echo "'$role_name' on $hsm/keys already assigned to $principal"
fi
