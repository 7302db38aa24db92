// Blob and queue resource logs of the function storage account, to the workspace: the dead-letter
// and poison alerts read them, and they are the record of who wrote or tried to delete what
// (an attempt to overwrite an audit anchor shows up here as a refused PutBlob or DeleteBlob).

@description('The function storage account.')
param storageAccountName string

@description('Log Analytics workspace (resource id).')
param workspaceId string

var categories = [
  'StorageRead'
  'StorageWrite'
  'StorageDelete'
]
var logs = [for category in categories: {
  category: category
  enabled: true
}]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource blobLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'cmk-rotation-blob-logs'
  scope: blobService
  properties: {
    workspaceId: workspaceId
    logs: logs
  }
}

resource queueLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'cmk-rotation-queue-logs'
  scope: queueService
  properties: {
    workspaceId: workspaceId
    logs: logs
  }
}
