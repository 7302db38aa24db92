#!/usr/bin/env bash
# Creates (or brings up to date) the Entra ID app registration that App Service
# authentication checks on every HTTP route, with the app roles Rotation.Plan,
# Rotation.Execute and Rotation.Replay, and gives them to the on-call group.
#
#   bash infra/scripts/create-entra-app.sh <display-name> [operator-group-object-id]
#
# Prints the application (client) id: pass it to main.bicep as authClientId.
# Needs `az login` as someone who may create applications (Application Developer or
# Application Administrator) and, to assign the roles to a group, Cloud Application
# Administrator or an owner of the app. Assigning a group needs Entra ID P1 or P2; without
# it, assign users one by one (the same POST with a user's object id).
# Idempotent: run it again after changing infra/entra/app-roles.json.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 <display-name> [operator-group-object-id]" >&2
  exit 2
fi
name="$1"
group="${2:-}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
roles_file="$here/../entra/app-roles.json"
# Azure CLI's own client id: pre-authorized so `az account get-access-token
# --resource api://<app>` works for on-call engineers without a consent prompt.
azure_cli_client_id="04b07795-8ddb-461a-bbee-02f9e1bf7b46"
# Fixed id of the delegated scope, so that reruns update rather than add.
scope_id="4f56d628-cd88-4522-aeb2-f29df6be5942"

graph="$(az cloud show --query endpoints.microsoftGraphResourceId -o tsv)"
graph="${graph%/}"

app_id="$(az ad app list --display-name "$name" --query '[0].appId' -o tsv)"
if [ -z "$app_id" ]; then
  app_id="$(az ad app create --display-name "$name" --sign-in-audience AzureADMyOrg \
    --app-roles @"$roles_file" --query appId -o tsv)"
  echo "created app registration $name ($app_id)" >&2
else
  az ad app update --id "$app_id" --app-roles @"$roles_file"
  echo "updated app registration $name ($app_id)" >&2
fi
object_id="$(az ad app show --id "$app_id" --query id -o tsv)"

# v2 tokens (the site validates the v2.0 issuer) and api://<appId> as the audience.
az ad app update --id "$app_id" --identifier-uris "api://$app_id" --requested-access-token-version 2

# A delegated scope for people, then pre-authorize the Azure CLI for it (two calls:
# Graph refuses to pre-authorize a scope in the same request that creates it).
az rest --method PATCH --uri "$graph/v1.0/applications/$object_id" \
  --headers 'Content-Type=application/json' \
  --body "{\"api\":{\"oauth2PermissionScopes\":[{\"id\":\"$scope_id\",\"value\":\"user_impersonation\",\"type\":\"User\",\"isEnabled\":true,\"adminConsentDisplayName\":\"Use the CMK rotation API\",\"adminConsentDescription\":\"Call the CMK rotation HTTP routes as the signed-in user.\",\"userConsentDisplayName\":\"Use the CMK rotation API\",\"userConsentDescription\":\"Call the CMK rotation HTTP routes as you.\"}]}}"
az rest --method PATCH --uri "$graph/v1.0/applications/$object_id" \
  --headers 'Content-Type=application/json' \
  --body "{\"api\":{\"preAuthorizedApplications\":[{\"appId\":\"$azure_cli_client_id\",\"delegatedPermissionIds\":[\"$scope_id\"]}]}}"

# The service principal, and only assigned users and groups may get a token for it.
sp_id="$(az ad sp list --filter "appId eq '$app_id'" --query '[0].id' -o tsv)"
if [ -z "$sp_id" ]; then
  sp_id="$(az ad sp create --id "$app_id" --query id -o tsv)"
fi
az ad sp update --id "$sp_id" --set appRoleAssignmentRequired=true

if [ -n "$group" ]; then
  assigned="$(az rest --method GET --uri "$graph/v1.0/servicePrincipals/$sp_id/appRoleAssignedTo" \
    --query "value[?principalId=='$group'].appRoleId" -o tsv)"
  for role_id in $(az ad app show --id "$app_id" --query 'appRoles[].id' -o tsv); do
    if grep -qx "$role_id" <<<"$assigned"; then
      continue
    fi
    az rest --method POST --uri "$graph/v1.0/servicePrincipals/$sp_id/appRoleAssignedTo" \
      --headers 'Content-Type=application/json' \
      --body "{\"principalId\":\"$group\",\"resourceId\":\"$sp_id\",\"appRoleId\":\"$role_id\"}" >/dev/null
    echo "assigned app role $role_id to group $group" >&2
  done
fi

echo "$app_id"
