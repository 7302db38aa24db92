// The two custom roles the rotation identity (and, optionally, the on-call group) gets.
// Built-in roles were too broad: Key Vault Crypto Officer can delete and purge keys, and
// Contributor can do anything to the consumers. Each list below is every action the
// product uses, and nothing else (tests/infra/test_templates.py holds them to it).

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

// Key Vault data plane: get key / list versions, rotate (new version), update key
// properties (expiry of the new version), read the rotation policy. No create, import,
// delete, purge, backup, restore, sign, wrap or unwrap; no rotation-policy write.
var keyVaultDataActions = [
  'Microsoft.KeyVault/vaults/keys/read'
  'Microsoft.KeyVault/vaults/keys/rotate/action'
  'Microsoft.KeyVault/vaults/keys/update/action'
  'Microsoft.KeyVault/vaults/keyrotationpolicies/read'
]

// ARM, always: find consumers (list and get), update the key id of registries and Batch
// accounts, poll the registry update (a long-running operation), read container groups.
var consumerActions = [
  'Microsoft.ContainerRegistry/registries/read'
  'Microsoft.ContainerRegistry/registries/write'
  'Microsoft.ContainerRegistry/locations/operationResults/read'
  'Microsoft.ContainerRegistry/registries/operationStatuses/read'
  'Microsoft.Batch/batchAccounts/read'
  'Microsoft.Batch/batchAccounts/write'
  'Microsoft.ContainerInstance/containerGroups/read'
]

// ARM, only with ROTATION_CONTAINER_GROUP_POLICY=redeploy: delete and re-create a group
// (its key can only be set at creation) and attach the group's user-assigned identity.
// The identity action is the one wildcard: it is how Azure names assign on any identity.
var containerGroupRedeployActions = [
  'Microsoft.ContainerInstance/containerGroups/write'
  'Microsoft.ContainerInstance/containerGroups/delete'
  'Microsoft.ContainerInstance/locations/operationResults/read'
  'Microsoft.ContainerInstance/locations/operations/read'
  'Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action'
]

// ARM, only with redeploy and groups in a virtual network: re-attach the group's subnet.
var containerGroupVnetActions = [
  'Microsoft.Network/virtualNetworks/subnets/join/action'
]

var redeploy = containerGroupPolicy == 'redeploy'
var armActions = concat(consumerActions, redeploy ? containerGroupRedeployActions : [], (redeploy && containerGroupsInVirtualNetworks) ? containerGroupVnetActions : [])
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
    description: 'Reads and updates the customer-managed key of container registries, Batch accounts and container groups.'
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

@description('Name (GUID) of the Key Vault custom role, the same in every subscription.')
output keyOperatorRoleName string = keyOperator.name

@description('Name (GUID) of the ARM custom role, the same in every subscription.')
output consumerOperatorRoleName string = consumerOperator.name
