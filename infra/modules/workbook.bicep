// The Azure Monitor workbook of the platform team (issue 28 item 1): rotation runs by status,
// consumers per key version, stale consumers, dead letters and poison, throttling, reverted
// consumers. The content is infra/workbooks/rotation.workbook.json (tested offline by
// tests/infra/test_workbook.py); this module fills in the resources its queries read.

param location string
param tags object = {}

@description('Application Insights component: the audit records (traces) and the rotation.* metrics (customMetrics).')
param appInsightsId string

@description('Log Analytics workspace: the storage account\'s blob and queue logs.')
param workspaceId string

@description('The function storage account (dead letters and poison messages are filtered by its name).')
param storageAccountName string

@description('Unique among the workbooks of the resource group (Azure refuses a second one of the same name).')
param displayName string = 'CMK rotation'

var content = loadTextContent('../workbooks/rotation.workbook.json')
var filled = replace(replace(replace(content, '__APP_INSIGHTS_ID__', appInsightsId), '__WORKSPACE_ID__', workspaceId), '__STORAGE_ACCOUNT__', storageAccountName)

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // a workbook's name is a GUID; one per deployment (resource group and component)
  name: guid(resourceGroup().id, appInsightsId, 'cmk-rotation-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: appInsightsId
    serializedData: filled
  }
}

output workbookId string = workbook.id
