// EventGrid Data Sender on the custom topic that receives rotation outcome events
// (ROTATION_OUTCOME_TOPIC_ENDPOINT), for the rotation identity and the on-call group.

param topicName string

@description('Principals to grant: [{ principalId, principalType }].')
param principals array

var eventGridDataSender = 'd5a91429-5739-47e2-a06b-3470a27159e7'

resource topic 'Microsoft.EventGrid/topics@2022-06-15' existing = {
  name: topicName
}

resource senders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for p in principals: {
  name: guid(topic.id, p.principalId, eventGridDataSender)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)
    principalId: p.principalId
    principalType: p.principalType
  }
}]
