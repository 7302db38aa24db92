#!/bin/sh
# azd postdeploy hook: pass 2 of the deployment. Event Grid checks, when a subscription is
# created, that the function it targets exists; it exists only once azd has deployed the code.
# So azd provision ran with DEPLOY_EVENT_SUBSCRIPTIONS=false (pass 1); now that on_key_event is
# listed, provision again with the subscriptions. From then on the flag stays true.
set -eu

if [ "${DEPLOY_EVENT_SUBSCRIPTIONS:-false}" = "true" ]; then
  exit 0
fi
: "${AZURE_RESOURCE_GROUP:?postdeploy: AZURE_RESOURCE_GROUP is not set}"
: "${FUNCTIONAPPNAME:?postdeploy: the deployment has no functionAppName output}"

# The functions appear a little after the package lands (the host indexes function_app.py).
attempt=0
until az functionapp function list -g "$AZURE_RESOURCE_GROUP" -n "$FUNCTIONAPPNAME" \
  --query "[].name" -o tsv | grep -q "on_key_event"; do
  attempt=$((attempt + 1))
  if [ "$attempt" -ge 30 ]; then
    echo "postdeploy: on_key_event is not listed on $FUNCTIONAPPNAME after 5 minutes;" >&2
    echo "postdeploy: check the deployment logs, then run: azd env set DEPLOY_EVENT_SUBSCRIPTIONS true && azd provision" >&2
    exit 1
  fi
  sleep 10
done

azd env set DEPLOY_EVENT_SUBSCRIPTIONS true
azd provision --no-prompt
