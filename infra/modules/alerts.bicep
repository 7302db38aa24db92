// The alerts that start the on-call story (issue 16 item 2; consumer-reverted: issue 26 item 5). Each is a log search alert
// routed to one action group; its description names the docs/runbook.md section to open.
//
// Signals: the product writes one JSON line per audit record ({"audit": {...}}, logger
// rotation.audit) which reaches Application Insights `traces` as a log record, never sampled
// (rotation/telemetry.py; ingestion sampling is off), so counts are exact; the storage
// account's blob and queue logs reach the
// workspace (storage-diagnostics.bicep) for dead letters (Event Grid writes the blob) and the
// poison queue (the Functions host moves the message).

param location string
param tags object = {}

@description('Application Insights component that receives the function logs.')
param appInsightsId string

@description('Log Analytics workspace that receives the storage logs.')
param workspaceId string

@description('The function storage account (its logs are filtered by name).')
param storageAccountName string

@description('Action group every alert notifies (resource id); empty deploys the alerts without a notification.')
param actionGroupId string

@description('How long without a finished sweep before cmk-rotation-sweep-missing fires (ISO 8601; at least twice the sweep interval).')
@allowed([
  'PT2H'
  'PT3H'
  'PT6H'
  'PT12H'
  'PT24H'
])
param sweepMissingWindow string = 'PT2H'

// One audit record per row: the JSON line, parsed.
var audit = 'traces | where message startswith "{\\"audit\\":" | extend a = parse_json(message).audit'
var blobWrites = 'StorageBlobLogs | where AccountName == "${storageAccountName}" and OperationName in ("PutBlob", "PutBlockList") and toint(StatusCode) between (200 .. 299)'
var queuePuts = 'StorageQueueLogs | where AccountName == "${storageAccountName}" and OperationName == "PutMessage" and toint(StatusCode) between (200 .. 299)'
var runbook = 'Runbook: docs/runbook.md'

var alerts = [
  {
    name: 'cmk-rotation-dead-letter-written'
    severity: 2
    onWorkspace: true
    query: '${blobWrites} and ObjectKey contains "/eventgrid-deadletters/" | summarize hits = count()'
    operator: 'GreaterThan'
    threshold: 0
    window: 'PT15M'
    frequency: 'PT5M'
    description: 'Event Grid gave up delivering a Key Vault event and wrote a dead-letter blob. ${runbook}, section "1. See what failed" (source deadletter), then "3. Replay".'
  }
  {
    name: 'cmk-rotation-poison-message'
    severity: 2
    onWorkspace: true
    query: '${queuePuts} and ObjectKey contains "/rotation-requests-poison" | summarize hits = count()'
    operator: 'GreaterThan'
    threshold: 0
    window: 'PT15M'
    frequency: 'PT5M'
    description: 'A rotation request failed every queue attempt and is in rotation-requests-poison. ${runbook}, section "1. See what failed" (source poison), "2. Fix the cause", then "3. Replay".'
  }
  {
    name: 'cmk-rotation-run-failed-or-blocked'
    severity: 2
    onWorkspace: false
    query: '${audit} | where tostring(a.kind) == "run-finished" and tostring(a.outcome) in ("failed", "needs-attention") | summarize hits = count()'
    operator: 'GreaterThan'
    threshold: 0
    window: 'PT15M'
    frequency: 'PT5M'
    description: 'A rotation run failed (Rotation.Failed) or needs a person (Rotation.Blocked). ${runbook}, section "2. Fix the cause" (rotation audit show <runId> gives the step and reason).'
  }
  {
    name: 'cmk-rotation-key-expired-incident'
    severity: 1
    onWorkspace: false
    query: '${audit} | where tostring(a.kind) == "incident" | summarize hits = count()'
    operator: 'GreaterThan'
    threshold: 0
    window: 'PT15M'
    frequency: 'PT5M'
    description: 'A key version expired while consumers still used it (KeyExpired incident). ${runbook}, section "2. Fix the cause": rotate the key now, then "4. Verify".'
  }
  {
    name: 'cmk-rotation-sweep-missing'
    severity: 2
    onWorkspace: false
    query: '${audit} | where tostring(a.kind) == "sweep-finished" and tostring(a.outcome) == "done" | summarize hits = count()'
    operator: 'LessThan'
    threshold: 1
    window: sweepMissingWindow
    frequency: 'PT15M'
    description: 'No drift sweep finished in ${sweepMissingWindow}: the timer is not running or every sweep fails. ${runbook}, section "1. See what failed" (rotation audit list --since), then check the function app and ROTATION_SWEEP_SCHEDULE.'
  }
  {
    name: 'cmk-rotation-consumer-reverted'
    severity: 2
    onWorkspace: false
    query: '${audit} | where tostring(a.kind) == "consumer-reverted" | summarize hits = count()'
    operator: 'GreaterThan'
    threshold: 0
    window: 'PT15M'
    frequency: 'PT5M'
    description: 'A deployment put a consumer back on an older key version than this system wrote (consumer-reverted). The run rolled it forward; the template will do it again. ${runbook}, section "6. A deployment put the old version back".'
  }
]

resource rules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for alert in alerts: {
  name: alert.name
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: alert.name
    description: alert.description
    severity: alert.severity
    enabled: true
    scopes: [
      (alert.onWorkspace) ? workspaceId : appInsightsId
    ]
    evaluationFrequency: alert.frequency
    windowSize: alert.window
    criteria: {
      allOf: [
        {
          query: alert.query
          timeAggregation: 'Total'
          metricMeasureColumn: 'hits'
          operator: alert.operator
          threshold: alert.threshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: empty(actionGroupId) ? [] : [
        actionGroupId
      ]
    }
  }
}]

output alertNames array = [for alert in alerts: alert.name]
