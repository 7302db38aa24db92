// The function's own storage: host state, the work queue, the product's tables and
// containers (names fixed by DESIGN.md section 7), and the data-plane roles on them.
// Shared keys are off: every caller, the Functions host included, uses Entra ID.

@description('Storage account name (3-24 lowercase letters and digits, globally unique).')
@minLength(3)
@maxLength(24)
param storageAccountName string

param location string
param tags object = {}

@description('Principal id of the function app user-assigned identity.')
param functionPrincipalId string

@description('Object id of the on-call Entra group; empty grants nothing.')
param operatorGroupId string = ''

@description('Name (GUID) of the anchor-writer custom role: read and create blobs, never overwrite or delete (custom-roles.bicep).')
param anchorWriterRoleName string

@description('The on-call group runs rotations in-process (operatorInProcessRotation): its runs must anchor their trail, so it gets the create-only anchor role instead of read.')
param operatorWritesAnchors bool = false

@description('Give the on-call group write (not only read) on rotation-redeploy (in-process rotate with the redeploy policy).')
param operatorNeedsRedeploySpecs bool = false

@description('Days a dead-letter blob is kept before the lifecycle rule deletes it.')
@minValue(7)
param deadLetterRetentionDays int = 30

@description('Days a daily rotation-age report (rotation-reports/rotation-age/) is kept before the lifecycle rule deletes it.')
@minValue(30)
@maxValue(3650)
param reportRetentionDays int = 400

@description('Days each audit anchor blob stays immutable (time-based retention).')
@minValue(1)
param auditAnchorImmutabilityDays int = 365

@description('Blob and container soft-delete retention, in days.')
@minValue(1)
param softDeleteRetentionDays int = 7

@description('Replication. Zone-redundant by default; use Standard_LRS where the region has no zones, GZRS for geo-redundancy.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param skuName string = 'Standard_ZRS'

@description('Subnet ids allowed through the storage firewall; empty keeps the public endpoint open (Entra ID only).')
param allowedSubnetIds array = []

// Names fixed by DESIGN.md section 7.
var queueNames = [
  'rotation-requests'
  'rotation-requests-poison'
]
var tableNames = [
  'RotationRuns'
  'RotationAudit'
  'RotationLedger'
]
var deadLetterContainerName = 'eventgrid-deadletters'
var poisonContainerName = 'rotation-poison'
var redeployContainerName = 'rotation-redeploy'
// The sweep's daily rotation-age report (compliance evidence), create-only blobs.
var reportsContainerName = 'rotation-reports'
var auditAnchorContainerName = 'audit-anchors'
var deploymentContainerName = 'function-deployment'
// The Functions host's own containers (timer schedule and locks, function keys): created here
// so that the identity's blob roles can stop at the containers it uses.
var hostContainerName = 'azure-webjobs-hosts'
var hostKeysContainerName = 'azure-webjobs-secrets'
var containerNames = [
  deadLetterContainerName
  poisonContainerName
  redeployContainerName
  auditAnchorContainerName
  deploymentContainerName
  hostContainerName
  hostKeysContainerName
  reportsContainerName
]

// Built-in data-plane roles (ids are the same in every tenant).
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageBlobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageQueueDataMessageSender = 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
var storageQueueDataMessageProcessor = '8a0f0c08-91a1-4084-bc3d-661d67233fed'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'

var hasOperators = !empty(operatorGroupId)
var subnetRules = [for subnetId in allowedSubnetIds: {
  id: subnetId
  action: 'Allow'
}]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_43: the name is a parameter checkov cannot resolve; its default is lowercase letters and digits, 24 at most
  // checkov:skip=CKV_AZURE_206: replication is a parameter (default ZRS); geo-redundancy is optional, see infra/README.md
  // checkov:skip=CKV_AZURE_35: default Deny when storageAllowedSubnetIds is set; otherwise the endpoint is public, Entra ID only, see infra/README.md
  // checkov:skip=CKV_AZURE_59: same as CKV_AZURE_35: public endpoint, shared keys off, Entra ID only
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: empty(allowedSubnetIds) ? 'Allow' : 'Deny'
      virtualNetworkRules: subnetRules
      ipRules: []
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteRetentionDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteRetentionDays
    }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for containerName in containerNames: {
  parent: blobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
}]

// containers[3] is audit-anchors: each run's head hash, write once. The policy is left
// unlocked so a test deployment can still be torn down; lock it in production (README).
resource auditAnchorImmutability 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = {
  parent: containers[3]
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: auditAnchorImmutabilityDays
    allowProtectedAppendWrites: false
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for queueName in queueNames: {
  parent: queueService
  name: queueName
}]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for tableName in tableNames: {
  parent: tableService
  name: tableName
}]

// Dead letters are kept long enough for on-call to find and replay them, then deleted; the
// daily rotation-age reports are kept reportRetentionDays (a year of evidence and some).
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-eventgrid-deadletters'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${deadLetterContainerName}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: deadLetterRetentionDays
                }
              }
            }
          }
        }
        {
          name: 'expire-rotation-age-reports'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${reportsContainerName}/rotation-age/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: reportRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
  dependsOn: [
    containers
  ]
}

// ---- the function identity: what the Functions host and the product need ----
// Blob roles per container, none on the account (issue 17, section 4). Contributor where the
// host or the product writes; read only on dead letters (Event Grid writes them); on
// audit-anchors the anchor-writer role: read and create, no overwrite, no delete.
// index into containerNames -> role
var functionContainerRoles = [
  {
    index: 0
    role: storageBlobDataReader
  }
  {
    index: 1
    role: storageBlobDataContributor
  }
  {
    index: 2
    role: storageBlobDataContributor
  }
  {
    index: 4
    role: storageBlobDataContributor
  }
  {
    index: 5
    role: storageBlobDataContributor
  }
  {
    index: 6
    role: storageBlobDataContributor
  }
  {
    index: 7 // rotation-reports: the sweep writes the daily report
    role: storageBlobDataContributor
  }
]

resource functionBlob 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for grant in functionContainerRoles: {
  name: guid(containers[grant.index].id, functionPrincipalId, grant.role)
  scope: containers[grant.index]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', grant.role)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}]

// containers[3] audit-anchors: the custom anchor-writer role (blobs/read, blobs/add/action).
resource functionAnchors 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(containers[3].id, functionPrincipalId, anchorWriterRoleName)
  scope: containers[3]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', anchorWriterRoleName)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource functionQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionPrincipalId, storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource functionTable 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionPrincipalId, storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ---- the on-call group: what the CLI and replay need, and nothing more ----
resource operatorTables 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (tableName, i) in (hasOperators ? tableNames : []): {
  name: guid(tables[i].id, operatorGroupId, storageTableDataContributor)
  scope: tables[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: operatorGroupId
    principalType: 'Group'
  }
}]

resource operatorQueueSend 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (queueName, i) in (hasOperators ? queueNames : []): {
  name: guid(queues[i].id, operatorGroupId, storageQueueDataMessageSender)
  scope: queues[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageSender)
    principalId: operatorGroupId
    principalType: 'Group'
  }
}]

resource operatorQueueProcess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (queueName, i) in (hasOperators ? queueNames : []): {
  name: guid(queues[i].id, operatorGroupId, storageQueueDataMessageProcessor)
  scope: queues[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageProcessor)
    principalId: operatorGroupId
    principalType: 'Group'
  }
}]

// containers[0] eventgrid-deadletters: read only.
resource operatorDeadLetters 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasOperators) {
  name: guid(containers[0].id, operatorGroupId, storageBlobDataReader)
  scope: containers[0]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
    principalId: operatorGroupId
    principalType: 'Group'
  }
}

// containers[1] rotation-poison: read and write (replay marks what it moved).
resource operatorPoison 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasOperators) {
  name: guid(containers[1].id, operatorGroupId, storageBlobDataContributor)
  scope: containers[1]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: operatorGroupId
    principalType: 'Group'
  }
}

// containers[3] audit-anchors: read (audit verify). People never overwrite or delete an
// anchor; when they run rotations in-process those runs anchor like the function's: create only.
resource operatorAnchors 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasOperators && !operatorWritesAnchors) {
  name: guid(containers[3].id, operatorGroupId, storageBlobDataReader)
  scope: containers[3]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
    principalId: operatorGroupId
    principalType: 'Group'
  }
}

resource operatorAnchorsCreate 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasOperators && operatorWritesAnchors) {
  name: guid(containers[3].id, operatorGroupId, anchorWriterRoleName)
  scope: containers[3]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', anchorWriterRoleName)
    principalId: operatorGroupId
    principalType: 'Group'
  }
}

// containers[2] rotation-redeploy: every plan reads it (interrupted redeploys are finished
// first); write only when an in-process rotate may redeploy container groups.
resource operatorRedeploySpecsRead 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasOperators && !operatorNeedsRedeploySpecs) {
  name: guid(containers[2].id, operatorGroupId, storageBlobDataReader)
  scope: containers[2]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
    principalId: operatorGroupId
    principalType: 'Group'
  }
}

resource operatorRedeploySpecs 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasOperators && operatorNeedsRedeploySpecs) {
  name: guid(containers[2].id, operatorGroupId, storageBlobDataContributor)
  scope: containers[2]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: operatorGroupId
    principalType: 'Group'
  }
}

output storageAccountId string = storage.id
output storageAccountName string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
output deadLetterContainerName string = deadLetterContainerName
output deploymentContainerName string = deploymentContainerName
output queueNames array = queueNames
output tableNames array = tableNames
output containerNames array = containerNames
