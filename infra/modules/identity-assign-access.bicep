// The identity-assigner custom role, granted only where re-created container groups (and the
// Data Factory PUT, which repeats the factory's identity block) need it:
// on each named user-assigned identity in one resource group, or on the whole resource group
// when no names are given. Never at a consumer or subscription scope (issue 17, section 4):
// with assign at subscription scope a stolen app could attach any identity to a new group.

@description('Principals to grant: [{ principalId, principalType }].')
param principals array

@description('Name (GUID) of the identity-assigner custom role.')
param roleName string

@description('User-assigned identities (names, in this resource group) the container groups use; empty grants the resource group.')
param identityNames array = []

var wholeGroup = empty(identityNames)
// principals is the function identity, then the on-call group when it rotates in-process;
// one loop per principal keeps to the loops checkov's Bicep parser reads (no nesting). The
// second uses last(): never an index past the end, even in a loop that runs zero times.
var hasSecond = length(principals) > 1

resource identities 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = [for name in identityNames: {
  name: name
}]

resource firstOnIdentity 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (name, i) in identityNames: {
  name: guid(identities[i].id, principals[0].principalId, roleName)
  scope: identities[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleName)
    principalId: principals[0].principalId
    principalType: principals[0].principalType
  }
}]

resource secondOnIdentity 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (name, i) in (hasSecond ? identityNames : []): {
  name: guid(identities[i].id, last(principals).principalId, roleName)
  scope: identities[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleName)
    principalId: last(principals).principalId
    principalType: last(principals).principalType
  }
}]

resource onGroup 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for p in (wholeGroup ? principals : []): {
  name: guid(resourceGroup().id, p.principalId, roleName)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleName)
    principalId: p.principalId
    principalType: p.principalType
  }
}]
