// What the rotation identity (and the on-call group) may do on one vault, and, optionally,
// what the consumers' own identities need on their key: RBAC-mode vaults get role
// assignments, access-policy-mode vaults get access policies with the same reach.

@description('Name of the Key Vault (in this resource group).')
param vaultName string

@allowed([
  'rbac'
  'accessPolicy'
])
param accessModel string

@description('Who rotates: [{ principalId, principalType }].')
param principals array

@description('Name (GUID) of the Key Vault custom role.')
param keyOperatorRoleName string

@description('Consumer identities and the key each wraps with: [{ keyName, principalId }].')
param consumerKeyAccess array = []

param tenantId string = subscription().tenantId

// Key Vault Crypto Service Encryption User: get, wrapKey, unwrapKey on one key. What a
// registry, Batch account or container group identity needs to use its CMK.
var cryptoServiceEncryptionUser = 'e147488a-f6f5-4113-8e2d-b22465e65bf6'

// Access-policy equivalents of the custom role and of Crypto Service Encryption User.
var rotatorKeyPermissions = [
  'get'
  'list'
  'rotate'
  'update'
  'getrotationpolicy'
]
var consumerKeyPermissions = [
  'get'
  'wrapKey'
  'unwrapKey'
]

var useRbac = accessModel == 'rbac'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource consumerKeys 'Microsoft.KeyVault/vaults/keys@2023-07-01' existing = [for c in consumerKeyAccess: {
  parent: vault
  name: c.keyName
}]

resource rotatorGrants 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for p in (useRbac ? principals : []): {
  name: guid(vault.id, p.principalId, keyOperatorRoleName)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyOperatorRoleName)
    principalId: p.principalId
    principalType: p.principalType
  }
}]

resource consumerGrants 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (c, i) in (useRbac ? consumerKeyAccess : []): {
  name: guid(consumerKeys[i].id, c.principalId, cryptoServiceEncryptionUser)
  scope: consumerKeys[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', cryptoServiceEncryptionUser)
    principalId: c.principalId
    principalType: 'ServicePrincipal'
  }
}]

var rotatorPolicies = [for p in principals: {
  tenantId: tenantId
  objectId: p.principalId
  permissions: {
    keys: rotatorKeyPermissions
  }
}]

var consumerPolicies = [for c in consumerKeyAccess: {
  tenantId: tenantId
  objectId: c.principalId
  permissions: {
    keys: consumerKeyPermissions
  }
}]

// 'add' merges these entries into the vault's existing access policies.
resource accessPolicies 'Microsoft.KeyVault/vaults/accessPolicies@2023-07-01' = if (!useRbac) {
  parent: vault
  name: 'add'
  properties: {
    accessPolicies: concat(rotatorPolicies, consumerPolicies)
  }
}
