// The Event Grid system topic of one vault, with a system-assigned identity that
// writes dead letters. A vault has at most one system topic: to adopt an existing one,
// pass its name (the deployment then turns its identity on).

param vaultName string
param systemTopicName string
param tags object = {}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: systemTopicName
  location: vault.location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: vault.id
    topicType: 'Microsoft.KeyVault.vaults'
  }
}

output principalId string = topic.identity.principalId
output systemTopicName string = topic.name
output systemTopicId string = topic.id
