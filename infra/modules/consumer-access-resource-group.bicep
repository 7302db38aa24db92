// The consumer custom role, assigned at one resource group (the narrow option: only the
// resource groups that hold registries, Batch accounts or container groups to rotate).

@description('Principals to grant: [{ principalId, principalType }].')
param principals array

@description('Name (GUID) of the consumer custom role.')
param roleName string

resource grants 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for p in principals: {
  name: guid(resourceGroup().id, p.principalId, roleName)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleName)
    principalId: p.principalId
    principalType: p.principalType
  }
}]
