// The two custom roles the rotation identity (and, optionally, the on-call group) gets.
// Built-in roles were too broad: Key Vault Crypto Officer can delete and purge keys, and
// Contributor can do anything to the consumers. Each list below is every action the
// product uses, and nothing else: each consumer kind declares its own (`arm_actions` in
// rotation/azure/kinds/) and tests/infra/test_templates.py holds these lists to them.

targetScope = 'subscription'

@description('Distinguishes this deployment in the role names (role names are unique per tenant).')
param instanceName string

@description('Subscriptions where the roles may be assigned (vaults and consumers).')
param assignableSubscriptionIds array

@allowed([
  'report'
  'redeploy'
])
param containerGroupPolicy string

@description('Redeployed container groups may sit in a virtual network (subnet join).')
param containerGroupsInVirtualNetworks bool

@description('HDInsight clusters are rotated: grants their rotate action and its status read.')
param hdInsightRotation bool

// Key Vault data plane: get key / list versions, rotate (new version), update key
// properties (expiry of the new version), read the rotation policy. No create, import,
// delete, purge, backup, restore, sign, wrap or unwrap; no rotation-policy write.
var keyVaultDataActions = [
  'Microsoft.KeyVault/vaults/keys/read'
  'Microsoft.KeyVault/vaults/keys/rotate/action'
  'Microsoft.KeyVault/vaults/keys/update/action'
  'Microsoft.KeyVault/vaults/keyrotationpolicies/read'
]

// ARM, always: find consumers (list and get), write the key id of those this system updates,
// and poll each long-running write (the operation-status reads, where the provider has them;
// ARM checks them at the resource group, which every assignment scope here covers).
// infra/README.md names the source of every action.
var consumerActions = [
  // Container Registry: PATCH encryption (long-running)
  'Microsoft.ContainerRegistry/registries/read'
  'Microsoft.ContainerRegistry/registries/write'
  'Microsoft.ContainerRegistry/locations/operationResults/read'
  'Microsoft.ContainerRegistry/registries/operationStatuses/read'
  // Batch: PATCH encryption (synchronous)
  'Microsoft.Batch/batchAccounts/read'
  'Microsoft.Batch/batchAccounts/write'
  // Container Instances: read only unless the redeploy policy is on
  'Microsoft.ContainerInstance/containerGroups/read'
  // Storage accounts: PATCH encryption.keyvaultproperties (synchronous)
  'Microsoft.Storage/storageAccounts/read'
  'Microsoft.Storage/storageAccounts/write'
  // Disk Encryption Sets: PATCH activeKey (long-running, Compute operations)
  'Microsoft.Compute/diskEncryptionSets/read'
  'Microsoft.Compute/diskEncryptionSets/write'
  'Microsoft.Compute/locations/operations/read'
  // SQL TDE protector: register the new version as a server key, then point the protector at it
  'Microsoft.Sql/servers/read'
  'Microsoft.Sql/servers/keys/read'
  'Microsoft.Sql/servers/keys/write'
  'Microsoft.Sql/servers/encryptionProtector/read'
  'Microsoft.Sql/servers/encryptionProtector/write'
  'Microsoft.Sql/locations/serverKeyAzureAsyncOperation/read'
  'Microsoft.Sql/locations/serverKeyOperationResults/read'
  'Microsoft.Sql/locations/encryptionProtectorAzureAsyncOperation/read'
  'Microsoft.Sql/locations/encryptionProtectorOperationResults/read'
  // Log Analytics dedicated clusters: PATCH keyVaultProperties (long-running)
  'Microsoft.OperationalInsights/clusters/read'
  'Microsoft.OperationalInsights/clusters/write'
  'Microsoft.OperationalInsights/locations/operationStatuses/read'
  // Data Explorer clusters: PATCH keyVaultProperties (long-running)
  'Microsoft.Kusto/clusters/read'
  'Microsoft.Kusto/clusters/write'
  'Microsoft.Kusto/locations/operationResults/read'
  // Event Hubs and Service Bus namespaces: PUT/PATCH encryption.keyVaultProperties
  'Microsoft.EventHub/namespaces/read'
  'Microsoft.EventHub/namespaces/write'
  'Microsoft.EventHub/namespaces/operationresults/read'
  'Microsoft.ServiceBus/namespaces/read'
  'Microsoft.ServiceBus/namespaces/write'
  'Microsoft.ServiceBus/namespaces/operationresults/read'
  // Seen, never written (manual-required): Cosmos DB accounts, AKS KMS
  'Microsoft.DocumentDB/databaseAccounts/read'
  'Microsoft.ContainerService/managedClusters/read'
  // Data Factory: PUT of the factory as read, with If-Match (synchronous)
  'Microsoft.DataFactory/factories/read'
  'Microsoft.DataFactory/factories/write'
  // Databricks workspaces: PUT of the workspace as read, with If-Match (long-running, Location)
  'Microsoft.Databricks/workspaces/read'
  'Microsoft.Databricks/workspaces/write'
  'Microsoft.Databricks/locations/operationStatuses/read'
  // App Configuration stores: PATCH encryption.keyVaultProperties (long-running)
  'Microsoft.AppConfiguration/configurationStores/read'
  'Microsoft.AppConfiguration/configurationStores/write'
  'Microsoft.AppConfiguration/locations/operationsStatus/read'
  // HDInsight clusters: seen always; rotated only with hdInsightRotation (below)
  'Microsoft.HDInsight/clusters/read'
  // Synapse workspaces: seen, never written (manual-required: a switch of keys by a person)
  'Microsoft.Synapse/workspaces/read'
  // PostgreSQL and MySQL flexible servers: PATCH dataEncryption (long-running)
  'Microsoft.DBforPostgreSQL/flexibleServers/read'
  'Microsoft.DBforPostgreSQL/flexibleServers/write'
  'Microsoft.DBforPostgreSQL/locations/azureAsyncOperation/read'
  'Microsoft.DBforPostgreSQL/locations/operationResults/read'
  'Microsoft.DBforMySQL/flexibleServers/read'
  'Microsoft.DBforMySQL/flexibleServers/write'
  'Microsoft.DBforMySQL/locations/azureAsyncOperation/read'
  'Microsoft.DBforMySQL/locations/operationResults/read'
  // Activity log: who put a consumer back on an older key version (one read per reverted consumer)
  'Microsoft.Insights/eventtypes/values/read'
]

// ARM, only with hdInsightRotation: the rotatediskencryptionkey action (long-running, Location at
// the cluster). Both names follow from the spec's paths, but the published operations list does
// not name them, and ARM refuses a whole role that names an action its provider does not
// register: asked for only by those who rotate HDInsight clusters (infra/README.md).
var hdInsightRotateActions = [
  'Microsoft.HDInsight/clusters/rotatediskencryptionkey/action'
  'Microsoft.HDInsight/clusters/operationresults/read'
]

// ARM, only with ROTATION_CONTAINER_GROUP_POLICY=redeploy: delete and re-create a group
// (its key can only be set at creation). Attaching the group's identity again is the
// identity-assigner role below, granted only on the identities the groups use.
var containerGroupRedeployActions = [
  'Microsoft.ContainerInstance/containerGroups/write'
  'Microsoft.ContainerInstance/containerGroups/delete'
  'Microsoft.ContainerInstance/locations/operationResults/read'
  'Microsoft.ContainerInstance/locations/operations/read'
]

// Attach a user-assigned identity to a resource: the action ARM's linked check asks for (the
// published operations list names it; no wildcard). Never granted at a consumer scope: only on
// named identities or their resource groups (identity-assign-access.bicep).
var identityAssignActions = [
  'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action'
]

// ARM, only with redeploy and groups in a virtual network: re-attach the group's subnet.
var containerGroupVnetActions = [
  'Microsoft.Network/virtualNetworks/subnets/join/action'
]

// Blob data plane on the audit-anchors container only: read (verify, chain heads) and create a
// new blob. No blobs/write (overwrite), no delete: a stolen identity cannot rewrite history,
// and the container's immutability policy refuses both as well.
var anchorWriterDataActions = [
  'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'
  'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action'
]

var redeploy = containerGroupPolicy == 'redeploy'
var armActions = concat(consumerActions, hdInsightRotation ? hdInsightRotateActions : [], redeploy ? containerGroupRedeployActions : [], (redeploy && containerGroupsInVirtualNetworks) ? containerGroupVnetActions : [])
var assignableScopes = [for id in assignableSubscriptionIds: '/subscriptions/${id}']

resource keyOperator 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, instanceName, 'cmk-rotation-key-operator')
  properties: {
    roleName: 'CMK Rotation Key Operator (${instanceName})'
    description: 'Reads keys and rotation policies, rotates keys and updates key properties. Cannot create, delete, purge or use keys.'
    type: 'CustomRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: keyVaultDataActions
        notDataActions: []
      }
    ]
    assignableScopes: assignableScopes
  }
}

resource consumerOperator 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, instanceName, 'cmk-rotation-consumer-operator')
  properties: {
    roleName: 'CMK Rotation Consumer Operator (${instanceName})'
    description: 'Reads CMK consumers and updates the customer-managed key of those the rotation system writes (registries, Batch, Storage, Disk Encryption Sets, SQL TDE, Log Analytics and Data Explorer clusters, Event Hubs and Service Bus namespaces; container groups with the redeploy policy).'
    type: 'CustomRole'
    permissions: [
      {
        actions: armActions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: assignableScopes
  }
}

resource identityAssigner 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, instanceName, 'cmk-rotation-identity-assigner')
  properties: {
    roleName: 'CMK Rotation Identity Assigner (${instanceName})'
    description: 'Attaches a user-assigned identity to a resource (a container group re-created with its key). Assigned only on the identities concerned.'
    type: 'CustomRole'
    permissions: [
      {
        actions: identityAssignActions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: assignableScopes
  }
}

resource anchorWriter 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, instanceName, 'cmk-rotation-anchor-writer')
  properties: {
    roleName: 'CMK Rotation Anchor Writer (${instanceName})'
    description: 'Reads and creates audit anchor blobs. Cannot overwrite or delete a blob.'
    type: 'CustomRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: anchorWriterDataActions
        notDataActions: []
      }
    ]
    assignableScopes: [
      subscription().id
    ]
  }
}

@description('Name (GUID) of the Key Vault custom role, the same in every subscription.')
output keyOperatorRoleName string = keyOperator.name

@description('Name (GUID) of the ARM custom role, the same in every subscription.')
output consumerOperatorRoleName string = consumerOperator.name

@description('Name (GUID) of the identity-assigner custom role, the same in every subscription.')
output identityAssignerRoleName string = identityAssigner.name

@description('Name (GUID) of the anchor-writer custom role (the deployment subscription only).')
output anchorWriterRoleName string = anchorWriter.name
