// CMK rotation: the whole system in one resource-group deployment.
//
//   az deployment group create -g <rg> -f infra/main.bicep -p @infra/params/small.parameters.json
//
// Pass 1 (deployEventSubscriptions=false) creates everything but the Event Grid
// subscriptions; deploy the function code; pass 2 (deployEventSubscriptions=true) adds
// them, because Event Grid refuses a subscription to a function that does not exist yet.
// See infra/README.md. Written for the grammar that checkov's Bicep parser reads: no
// lambdas, no user-defined types, no conditions inside loops (empty arrays instead).

// ---------------------------------------------------------------- naming
@description('Short lowercase name (letters and digits) that every resource name starts from.')
@minLength(3)
@maxLength(11)
param appName string = 'cmkrot'

param location string = resourceGroup().location
param tags object = {}

@description('The azd environment (AZURE_ENV_NAME, main.parameters.json): tagged azd-env-name on the resource group and on every resource, as azd\'s templates tag them. Empty (plain az deployments) adds no tag.')
param environmentName string = ''

@description('Storage account for the function (globally unique).')
@minLength(3)
@maxLength(24)
param storageAccountName string = take(toLower('st${appName}${uniqueString(resourceGroup().id)}'), 24)

@description('Function App name (globally unique host name).')
param functionAppName string = 'func-${appName}-${uniqueString(resourceGroup().id)}'

// ---------------------------------------------------------------- what the system watches
@description('''Key Vaults whose keys are rotated. Each item:
{ "name": "contoso-cmk", "resourceGroup": "rg-security",
  "subscriptionId": "<optional, default: this subscription>",
  "accessModel": "rbac" | "accessPolicy" (optional, default rbac),
  "systemTopicName": "<optional: the vault's existing Event Grid system topic, default <name>-events>",
  "consumerKeyAccess": [ { "keyName": "acr-cmk", "principalId": "<consumer identity object id>" } ] (optional) }''')
@minLength(1)
param vaults array

@description('Subscriptions searched for consumers (ROTATION_SUBSCRIPTIONS).')
@minLength(1)
param rotationSubscriptionIds array = [
  subscription().subscriptionId
]

@description('Resource groups where the consumer role is assigned: [{ "subscriptionId": "...", "resourceGroup": "..." }]. The narrow option, and the default scope once any is given.')
param consumerResourceGroupScopes array = []

@description('Subscriptions where the consumer role is assigned at subscription scope (an explicit choice once resource groups are given; see infra/README.md for the trade-off).')
param consumerSubscriptionScopes array = empty(consumerResourceGroupScopes) ? rotationSubscriptionIds : []

@description('''With the redeploy policy: where the container groups' user-assigned identities live, so the app may attach them again:
[{ "subscriptionId": "...", "resourceGroup": "...", "identityNames": ["id-app"] (optional: empty grants the whole resource group) }].''')
param containerGroupIdentityScopes array = []

@description('''Where the Data Factory factories' user-assigned encryption identities live: the factory PUT repeats its identity block, and ARM asks for assign on each identity it names:
[{ "subscriptionId": "...", "resourceGroup": "...", "identityNames": ["id-adf"] (optional: empty grants the whole resource group) }].''')
param dataFactoryIdentityScopes array = []

@description('Managed HSM pools (names) whose keys are rotated; their local RBAC role is granted by infra/scripts/grant-hsm-role.sh (data plane, not ARM).')
param managedHsms array = []

// ---------------------------------------------------------------- Event Grid (two passes)
@description('Pass 2: create the Event Grid subscriptions. Needs the function code deployed first.')
param deployEventSubscriptions bool = false

@description('Name of each vault event subscription (the upper-cased folder of its dead letters).')
param eventSubscriptionName string = 'cmk-rotation'

@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 10

@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

// ---------------------------------------------------------------- alerts (docs/runbook.md, Alerts)
@description('Action group (resource id) the five alerts notify: the on-call rotation. Empty deploys them without a notification.')
param alertActionGroupId string = ''

@description('cmk-rotation-sweep-missing fires when no sweep finished in this window (at least twice the sweep interval).')
@allowed([
  'PT2H'
  'PT3H'
  'PT6H'
  'PT12H'
  'PT24H'
])
param sweepMissingWindow string = 'PT2H'

// ---------------------------------------------------------------- people
@description('Application (client) id of the Entra ID app registration that protects the HTTP routes (infra/scripts/create-entra-app.sh).')
param authClientId string

param authTenantId string = tenant().tenantId

@description('Object id of the on-call Entra group (CLI and replay); empty grants nothing.')
param operatorGroupId string = ''

@description('Also give the on-call group the vault and ARM roles, for an in-process rotate or replay.')
param operatorInProcessRotation bool = true

// ---------------------------------------------------------------- private networking
@description('Subnet (delegated to Microsoft.App/environments) for the function app virtual network integration; empty for none.')
param functionSubnetId string = ''

@description('Subnet where a private endpoint to each vault is created; empty for none.')
param vaultPrivateEndpointSubnetId string = ''

@description('Private DNS zone privatelink.vaultcore.azure.net for those endpoints; empty to manage DNS elsewhere.')
param vaultPrivateDnsZoneId string = ''

@description('Subnets (with the Microsoft.Storage service endpoint) allowed through the storage firewall; empty keeps the endpoint public (Entra ID only).')
param storageAllowedSubnetIds array = []

// ---------------------------------------------------------------- function sizing and retention
@description('Python version of the Flex Consumption runtime: 3.12, the newest the plan lists (infra/README.md, "Python version"); 3.13 only where `az functionapp list-flexconsumption-runtimes` offers it.')
@allowed([
  '3.12'
  '3.13'
])
param pythonVersion string = '3.12'

@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Spread the Flex Consumption plan over availability zones (needs zone-redundant storage).')
param zoneRedundant bool = false

@description('Replication of the function storage account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param storageSkuName string = 'Standard_ZRS'

@minValue(7)
param deadLetterRetentionDays int = 30

@description('Days a daily rotation-age report is kept in rotation-reports (30-3650).')
@minValue(30)
@maxValue(3650)
param reportRetentionDays int = 400

@minValue(1)
param auditAnchorImmutabilityDays int = 365

@minValue(30)
param logRetentionDays int = 90

// ---------------------------------------------------------------- DESIGN.md section 7 settings
@allowed([
  'AzurePublicCloud'
  'AzureChinaCloud'
  'AzureUSGovernment'
  'Custom'
])
param rotationCloud string = 'AzurePublicCloud'

@description('ARM URL when rotationCloud is Custom; empty otherwise.')
param rotationArmEndpoint string = ''

@description('Targets updated at once per subscription: auto (each subscription follows ARM\'s remaining budget, starting at 16) or a fixed 1-256.')
param rotationConcurrency string = 'auto'

@description('How consumers are found: arm (a list per kind and subscription), resourcegraph (one query across subscriptions) or auto (Resource Graph from 20 subscriptions on).')
@allowed([
  'arm'
  'resourcegraph'
  'auto'
])
param rotationDiscovery string = 'auto'

@description('How a run\'s targets wait on Azure: hub (greenlets on one thread that drives every transfer) or threads (a thread per target in flight).')
@allowed([
  'hub'
  'threads'
])
param rotationExecution string = 'hub'

@description('A run stops starting new work after this many seconds (5-86400).')
@minValue(5)
@maxValue(86400)
param rotationTimeBudgetSeconds int = 600

@description('The longest single Retry-After honoured, in seconds (0-3600); never past the run\'s budget.')
param rotationMaxRetryAfterSeconds string = '60'

@description('The largest answer body read from Key Vault or ARM, in bytes (65536-1073741824).')
@minValue(65536)
@maxValue(1073741824)
param rotationMaxResponseBytes int = 33554432

@allowed([
  'report'
  'redeploy'
])
param rotationContainerGroupPolicy string = 'report'

@description('A resource tagged <tag>=off is never touched.')
param rotationOptOutTag string = 'cmk-rotation'

@description('Expiry of a new version when the key has no expiry policy (28-3650 days).')
@minValue(28)
@maxValue(3650)
param rotationNewVersionExpiryDays int = 365

@description('The sweep treats versions expiring within this many days as near expiry (1-365).')
@minValue(1)
@maxValue(365)
param rotationExpiryWindowDays int = 30

@description('Six-field NCRONTAB of the drift sweep.')
param rotationSweepSchedule string = '0 0 * * * *'

@description('When a key rotation policy has a Rotate action, let Key Vault make the versions.')
param rotationDeferToKeyPolicy bool = true

@description('Tuning: LRO poll interval in seconds when ARM sends no Retry-After (0.01-60).')
param rotationPollIntervalSeconds string = '5'

@description('Tuning: first backoff in seconds for transient errors (0-60).')
param rotationRetryInitialSeconds string = '1'

@description('Tuning: longest backoff in seconds for transient errors (0-600).')
param rotationRetryMaxSeconds string = '30'

@description('Tuning: attempts per call for transient errors (1-20).')
@minValue(1)
@maxValue(20)
param rotationRetryAttempts int = 6

@description('Tuning: per-key lease length in seconds (5-3600).')
@minValue(5)
@maxValue(3600)
param rotationLeaseSeconds int = 60

@description('Canary waves: minutes a wave waits after the previous one was verified (0-10080; 0 = no soak).')
@minValue(0)
@maxValue(10080)
param rotationWaveSoakMinutes int = 0

@description('Canary waves: during a soak, seconds between re-checks of the earlier waves (1-3600).')
@minValue(1)
@maxValue(3600)
param rotationWaveRecheckSeconds int = 300

@description('The sweep\'s daily rotation-age report: versions older than this many days are stale (1-3650).')
@minValue(1)
@maxValue(3650)
param rotationReportMaxAgeDays int = 365

@description('`rotation versions disable` refuses a version a consumer was reverted to within this many days (0-3650; 0 = off).')
@minValue(0)
@maxValue(3650)
param rotationRevertGuardDays int = 30

@description('A run with more targets to update than this is split into shards on the queue that any instance takes (1-1000000; docs/scaling.md says why 2000).')
@minValue(1)
@maxValue(1000000)
param rotationShardThreshold int = 2000

@description('Event Grid custom topic endpoint for outcome events; empty turns them off.')
param rotationOutcomeTopicEndpoint string = ''

@description('Resource id of that topic: the identity gets EventGrid Data Sender on it. Empty for none.')
param rotationOutcomeTopicResourceId string = ''

@description('With the redeploy policy: some container groups sit in a virtual network (grants subnet join).')
param containerGroupsInVirtualNetworks bool = false

@description('Rotate HDInsight clusters: grants their rotatediskencryptionkey action and its status read (infra/README.md: not in the published operations list).')
param hdInsightRotation bool = false

// ---------------------------------------------------------------- derived values
var resourceTags = union(tags, empty(environmentName) ? {} : {
  'azd-env-name': environmentName
})
var suffix = uniqueString(resourceGroup().id)
var instanceName = '${appName}-${resourceGroup().name}'
var vaultHosts = [for v in vaults: '${v.name}${environment().suffixes.keyvaultDns}']
var hsmHosts = [for h in managedHsms: '${h}${replace(environment().suffixes.keyvaultDns, '.vault.', '.managedhsm.')}']
var vaultSubscriptionIds = [for v in vaults: v.?subscriptionId ?? subscription().subscriptionId]
var consumerGroupSubscriptionIds = [for s in consumerResourceGroupScopes: s.subscriptionId]
var identitySubscriptionIds = [for s in containerGroupIdentityScopes: s.subscriptionId]
var factoryIdentitySubscriptionIds = [for s in dataFactoryIdentityScopes: s.subscriptionId]
var assignableSubscriptionIds = union([
  subscription().subscriptionId
], rotationSubscriptionIds, consumerSubscriptionScopes, consumerGroupSubscriptionIds, vaultSubscriptionIds, identitySubscriptionIds, factoryIdentitySubscriptionIds)
var operatorRotates = !empty(operatorGroupId) && operatorInProcessRotation
var redeploysGroups = rotationContainerGroupPolicy == 'redeploy'
var outcomeTopicParts = split(empty(rotationOutcomeTopicResourceId) ? '${resourceGroup().id}/providers/Microsoft.EventGrid/topics/none' : rotationOutcomeTopicResourceId, '/')

// ---------------------------------------------------------------- resource group tag
// azd finds an environment's resource group by its azd-env-name tag. The tags resource replaces
// the group's whole tag set, so the current tags are written back with the new one (a group
// without tags has no `tags` property: the union supplies an empty set).
var groupNow = union({
  tags: {}
}, resourceGroup())

resource groupTags 'Microsoft.Resources/tags@2024-03-01' = if (!empty(environmentName)) {
  name: 'default'
  properties: {
    tags: union(groupNow.tags, {
      'azd-env-name': environmentName
    })
  }
}

// ---------------------------------------------------------------- identity
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${appName}-${suffix}'
  location: location
  tags: resourceTags
}

var rotators = concat([
  {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
], operatorRotates ? [
  {
    principalId: operatorGroupId
    principalType: 'Group'
  }
] : [])

// ---------------------------------------------------------------- storage, telemetry, app
module storage 'modules/storage.bicep' = {
  name: '${appName}-storage'
  params: {
    storageAccountName: storageAccountName
    location: location
    tags: resourceTags
    skuName: storageSkuName
    functionPrincipalId: identity.properties.principalId
    operatorGroupId: operatorGroupId
    anchorWriterRoleName: roles.outputs.anchorWriterRoleName
    operatorWritesAnchors: operatorRotates
    operatorNeedsRedeploySpecs: operatorRotates && rotationContainerGroupPolicy == 'redeploy'
    deadLetterRetentionDays: deadLetterRetentionDays
    reportRetentionDays: reportRetentionDays
    auditAnchorImmutabilityDays: auditAnchorImmutabilityDays
    allowedSubnetIds: storageAllowedSubnetIds
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: '${appName}-monitoring'
  params: {
    workspaceName: 'log-${appName}-${suffix}'
    appInsightsName: 'appi-${appName}-${suffix}'
    location: location
    tags: resourceTags
    retentionInDays: logRetentionDays
    publisherPrincipalId: identity.properties.principalId
  }
}

module storageDiagnostics 'modules/storage-diagnostics.bicep' = {
  name: '${appName}-storage-diagnostics'
  params: {
    storageAccountName: storage.outputs.storageAccountName
    workspaceId: monitoring.outputs.workspaceId
  }
}

module alerts 'modules/alerts.bicep' = {
  name: '${appName}-alerts'
  params: {
    location: location
    tags: resourceTags
    appInsightsId: monitoring.outputs.appInsightsId
    workspaceId: monitoring.outputs.workspaceId
    storageAccountName: storage.outputs.storageAccountName
    actionGroupId: alertActionGroupId
    sweepMissingWindow: sweepMissingWindow
  }
}

module workbook 'modules/workbook.bicep' = {
  name: '${appName}-workbook'
  params: {
    location: location
    tags: resourceTags
    appInsightsId: monitoring.outputs.appInsightsId
    workspaceId: monitoring.outputs.workspaceId
    storageAccountName: storage.outputs.storageAccountName
    displayName: 'CMK rotation (${appName})'
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: '${appName}-function-app'
  params: {
    functionAppName: functionAppName
    planName: 'plan-${appName}-${suffix}'
    location: location
    tags: resourceTags
    identityId: identity.id
    identityClientId: identity.properties.clientId
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    subnetId: functionSubnetId
    pythonVersion: pythonVersion
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    zoneRedundant: zoneRedundant
    authClientId: authClientId
    authTenantId: authTenantId
    allowedVaults: join(concat(vaultHosts, hsmHosts), ',')
    subscriptions: join(rotationSubscriptionIds, ',')
    cloud: rotationCloud
    armEndpoint: rotationArmEndpoint
    concurrency: rotationConcurrency
    discovery: rotationDiscovery
    execution: rotationExecution
    timeBudgetSeconds: rotationTimeBudgetSeconds
    maxRetryAfterSeconds: rotationMaxRetryAfterSeconds
    maxResponseBytes: rotationMaxResponseBytes
    containerGroupPolicy: rotationContainerGroupPolicy
    optOutTag: rotationOptOutTag
    newVersionExpiryDays: rotationNewVersionExpiryDays
    expiryWindowDays: rotationExpiryWindowDays
    sweepSchedule: rotationSweepSchedule
    deferToKeyPolicy: rotationDeferToKeyPolicy
    outcomeTopicEndpoint: rotationOutcomeTopicEndpoint
    pollIntervalSeconds: rotationPollIntervalSeconds
    retryInitialSeconds: rotationRetryInitialSeconds
    retryMaxSeconds: rotationRetryMaxSeconds
    retryAttempts: rotationRetryAttempts
    leaseSeconds: rotationLeaseSeconds
    waveSoakMinutes: rotationWaveSoakMinutes
    waveRecheckSeconds: rotationWaveRecheckSeconds
    reportMaxAgeDays: rotationReportMaxAgeDays
    revertGuardDays: rotationRevertGuardDays
    shardThreshold: rotationShardThreshold
  }
}

// ---------------------------------------------------------------- custom roles
module roles 'modules/custom-roles.bicep' = {
  name: '${appName}-custom-roles'
  scope: subscription()
  params: {
    instanceName: instanceName
    assignableSubscriptionIds: assignableSubscriptionIds
    containerGroupPolicy: rotationContainerGroupPolicy
    containerGroupsInVirtualNetworks: containerGroupsInVirtualNetworks
    hdInsightRotation: hdInsightRotation
  }
}

// ---------------------------------------------------------------- vaults
module vaultAccess 'modules/vault-access.bicep' = [for v in vaults: {
  name: '${appName}-vault-access-${v.name}'
  scope: resourceGroup(v.?subscriptionId ?? subscription().subscriptionId, v.resourceGroup)
  params: {
    vaultName: v.name
    accessModel: v.?accessModel ?? 'rbac'
    principals: rotators
    keyOperatorRoleName: roles.outputs.keyOperatorRoleName
    consumerKeyAccess: v.?consumerKeyAccess ?? []
  }
}]

module vaultTopics 'modules/vault-topic.bicep' = [for v in vaults: {
  name: '${appName}-vault-topic-${v.name}'
  scope: resourceGroup(v.?subscriptionId ?? subscription().subscriptionId, v.resourceGroup)
  params: {
    vaultName: v.name
    systemTopicName: v.?systemTopicName ?? '${v.name}-events'
    tags: resourceTags
  }
}]

module deadLetterAccess 'modules/deadletter-access.bicep' = {
  name: '${appName}-deadletter-access'
  params: {
    storageAccountName: storage.outputs.storageAccountName
    containerName: storage.outputs.deadLetterContainerName
    topicPrincipalIds: [for (v, i) in vaults: vaultTopics[i].outputs.principalId]
  }
}

// Pass 2 only: an empty list in pass 1 (no condition inside a loop, see the header).
module vaultEventSubscriptions 'modules/vault-event-subscription.bicep' = [for (v, i) in (deployEventSubscriptions ? vaults : []): {
  name: '${appName}-vault-events-${v.name}'
  scope: resourceGroup(v.?subscriptionId ?? subscription().subscriptionId, v.resourceGroup)
  params: {
    systemTopicName: vaultTopics[i].outputs.systemTopicName
    eventSubscriptionName: eventSubscriptionName
    functionAppId: functionApp.outputs.functionAppId
    deadLetterStorageAccountId: storage.outputs.storageAccountId
    deadLetterContainerName: storage.outputs.deadLetterContainerName
    maxDeliveryAttempts: maxDeliveryAttempts
    eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
  }
  dependsOn: [
    deadLetterAccess
  ]
}]

// ---------------------------------------------------------------- consumers
module consumerSubscriptionAccess 'modules/consumer-access-subscription.bicep' = [for s in consumerSubscriptionScopes: {
  name: '${appName}-consumer-access-${s}'
  scope: subscription(s)
  params: {
    principals: rotators
    roleName: roles.outputs.consumerOperatorRoleName
  }
}]

module consumerResourceGroupAccess 'modules/consumer-access-resource-group.bicep' = [for s in consumerResourceGroupScopes: {
  name: '${appName}-consumer-access'
  scope: resourceGroup(s.subscriptionId, s.resourceGroup)
  params: {
    principals: rotators
    roleName: roles.outputs.consumerOperatorRoleName
  }
}]

// Redeploy only: attach the groups' identities again, granted on those identities alone.
module identityAssignAccess 'modules/identity-assign-access.bicep' = [for s in (redeploysGroups ? containerGroupIdentityScopes : []): {
  name: '${appName}-identity-assign-${s.resourceGroup}'
  scope: resourceGroup(s.subscriptionId, s.resourceGroup)
  params: {
    principals: rotators
    roleName: roles.outputs.identityAssignerRoleName
    identityNames: s.?identityNames ?? []
  }
}]

// Data Factory: the factory PUT (as read) repeats its user-assigned identity; granted on those identities alone.
module factoryIdentityAssignAccess 'modules/identity-assign-access.bicep' = [for s in dataFactoryIdentityScopes: {
  name: '${appName}-factory-identity-assign-${s.resourceGroup}'
  scope: resourceGroup(s.subscriptionId, s.resourceGroup)
  params: {
    principals: rotators
    roleName: roles.outputs.identityAssignerRoleName
    identityNames: s.?identityNames ?? []
  }
}]

// ---------------------------------------------------------------- outcome events (optional)
module outcomeTopicAccess 'modules/eventgrid-sender-access.bicep' = if (!empty(rotationOutcomeTopicResourceId)) {
  name: '${appName}-outcome-topic-access'
  scope: resourceGroup(outcomeTopicParts[2], outcomeTopicParts[4])
  params: {
    topicName: last(outcomeTopicParts)
    principals: rotators
  }
}

// ---------------------------------------------------------------- private endpoints to vaults (optional)
resource vaultPrivateEndpoints 'Microsoft.Network/privateEndpoints@2023-11-01' = [for v in (empty(vaultPrivateEndpointSubnetId) ? [] : vaults): {
  name: 'pe-${appName}-${v.name}'
  location: location
  tags: resourceTags
  properties: {
    subnet: {
      id: vaultPrivateEndpointSubnetId
    }
    privateLinkServiceConnections: [
      {
        name: v.name
        properties: {
          privateLinkServiceId: resourceId(v.?subscriptionId ?? subscription().subscriptionId, v.resourceGroup, 'Microsoft.KeyVault/vaults', v.name)
          groupIds: [
            'vault'
          ]
        }
      }
    ]
  }
}]

resource vaultPrivateDns 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2023-11-01' = [for (v, i) in ((empty(vaultPrivateEndpointSubnetId) || empty(vaultPrivateDnsZoneId)) ? [] : vaults): {
  parent: vaultPrivateEndpoints[i]
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: 'vaultcore'
        properties: {
          privateDnsZoneId: vaultPrivateDnsZoneId
        }
      }
    ]
  }
}]

// ---------------------------------------------------------------- outputs
output functionAppName string = functionApp.outputs.functionAppName
output functionAppHostName string = functionApp.outputs.defaultHostName
output identityPrincipalId string = identity.properties.principalId
output identityClientId string = identity.properties.clientId
output storageAccountName string = storage.outputs.storageAccountName
output allowedVaults string = join(concat(vaultHosts, hsmHosts), ',')
output managedHsmNames array = managedHsms
output alertNames array = alerts.outputs.alertNames
output keyOperatorRoleName string = roles.outputs.keyOperatorRoleName
output consumerOperatorRoleName string = roles.outputs.consumerOperatorRoleName
output identityAssignerRoleName string = roles.outputs.identityAssignerRoleName
output anchorWriterRoleName string = roles.outputs.anchorWriterRoleName
output eventSubscriptionsDeployed bool = deployEventSubscriptions
output systemTopicPrincipalIds array = [for (v, i) in vaults: vaultTopics[i].outputs.principalId]
