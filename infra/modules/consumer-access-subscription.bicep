// The consumer custom role, assigned at a whole subscription (for ROTATION_SUBSCRIPTIONS
// where every registry, Batch account and container group may be a consumer).

targetScope = 'subscription'

@description('Principals to grant: [{ principalId, principalType }].')
param principals array

@description('Name (GUID) of the consumer custom role.')
param roleName string

resource grants 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for p in principals: {
  name: guid(subscription().id, p.principalId, roleName)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleName)
    principalId: p.principalId
    principalType: p.principalType
  }
}]
