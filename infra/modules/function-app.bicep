// The Python Function App on the Flex Consumption plan, running as a user-assigned
// identity, with identity-based host storage, Entra ID telemetry, every setting of
// DESIGN.md section 7, and App Service authentication (Entra ID) in front of the HTTP routes.

param functionAppName string
param planName string
param location string
param tags object = {}

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of that identity (AZURE_CLIENT_ID and AzureWebJobsStorage__clientId).')
param identityClientId string

param blobEndpoint string
param queueEndpoint string
param tableEndpoint string
param deploymentContainerName string
param appInsightsConnectionString string

@description('Subnet (delegated to Microsoft.App/environments) for virtual network integration; empty for none.')
param subnetId string = ''

@description('Python version of the Flex Consumption runtime.')
param pythonVersion string

@minValue(40)
@maxValue(1000)
param maximumInstanceCount int

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int

@description('Spread the plan over availability zones (region support and ZRS storage required).')
param zoneRedundant bool = false

@description('Entra ID application (client) id that protects the HTTP routes.')
param authClientId string

@description('Entra ID tenant that issues the tokens.')
param authTenantId string

// ---- DESIGN.md section 7 settings, already validated by main.bicep ----
param allowedVaults string
param subscriptions string
param cloud string
param armEndpoint string
param concurrency string
param discovery string
param execution string
param timeBudgetSeconds int
param maxRetryAfterSeconds string
param maxResponseBytes int
param containerGroupPolicy string
param optOutTag string
param newVersionExpiryDays int
param expiryWindowDays int
param sweepSchedule string
param deferToKeyPolicy bool
param outcomeTopicEndpoint string
param pollIntervalSeconds string = '5'
param retryInitialSeconds string = '1'
param retryMaxSeconds string = '30'
param retryAttempts int = 6
param leaseSeconds int = 60
param waveSoakMinutes int = 0
param waveRecheckSeconds int = 300
param reportMaxAgeDays int = 365
param revertGuardDays int = 30
param shardThreshold int = 2000

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy is a parameter (zoneRedundant), off by default because not every region has zones
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: Event Grid push delivery needs a reachable endpoint; HTTP routes need Entra ID (authsettingsV2)
  // checkov:skip=CKV_AZURE_17: callers authenticate with Entra ID tokens; Event Grid cannot present a client certificate
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales out per event from zero; there is no fixed instance pool to keep
  // checkov:skip=CKV_AZURE_213: no health check on Flex Consumption; the platform replaces unhealthy instances
  name: functionAppName
  location: location
  // azd deploy finds the app of service `rotation` (azure.yaml) by this tag
  tags: union(tags, {
    'azd-service-name': 'rotation'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    keyVaultReferenceIdentity: identityId
    virtualNetworkSubnetId: empty(subnetId) ? null : subnetId
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      ftpsState: 'Disabled'
      appSettings: [
        {
          name: 'AzureWebJobsStorage__blobServiceUri'
          value: blobEndpoint
        }
        {
          name: 'AzureWebJobsStorage__queueServiceUri'
          value: queueEndpoint
        }
        {
          name: 'AzureWebJobsStorage__tableServiceUri'
          value: tableEndpoint
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        {
          name: 'AZURE_CLIENT_ID'
          value: identityClientId
        }
        {
          // DefaultAzureCredential tries only environment, workload and managed identity:
          // a misconfigured identity fails at once instead of walking the developer chain.
          name: 'AZURE_TOKEN_CREDENTIALS'
          value: 'prod'
        }
        {
          // glibc gives each of a run's worker threads (up to 256) a malloc arena, up to 8 per
          // core, and their fragments stay resident: the worker's memory grew run after run
          // (docs/performance.md, bench/rss.py). Two arenas keep it flat; read at process start.
          name: 'MALLOC_ARENA_MAX'
          value: '2'
        }
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: appInsightsConnectionString
        }
        {
          // The Python worker's OpenTelemetry to Application Insights (host.json telemetryMode):
          // the worker configures the Azure Monitor distro before it loads function_app.py, and
          // rotation/telemetry.py adds its spans and metrics to it.
          name: 'PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY'
          value: 'true'
        }
        {
          // The worker exports the logs of this logger and its children only: the app's
          // (rotation.*, the audit lines among them), not every SDK request line at INFO.
          name: 'PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME'
          value: 'rotation'
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identityClientId};Authorization=AAD'
        }
        {
          name: 'ROTATION_ALLOWED_VAULTS'
          value: allowedVaults
        }
        {
          name: 'ROTATION_SUBSCRIPTIONS'
          value: subscriptions
        }
        {
          name: 'ROTATION_CLOUD'
          value: cloud
        }
        {
          name: 'ROTATION_ARM_ENDPOINT'
          value: armEndpoint
        }
        {
          name: 'ROTATION_CONCURRENCY'
          value: concurrency
        }
        {
          name: 'ROTATION_DISCOVERY'
          value: discovery
        }
        {
          name: 'ROTATION_EXECUTION'
          value: execution
        }
        {
          name: 'ROTATION_TIME_BUDGET_SECONDS'
          value: string(timeBudgetSeconds)
        }
        {
          name: 'ROTATION_MAX_RETRY_AFTER_SECONDS'
          value: maxRetryAfterSeconds
        }
        {
          name: 'ROTATION_MAX_RESPONSE_BYTES'
          value: string(maxResponseBytes)
        }
        {
          name: 'ROTATION_CONTAINER_GROUP_POLICY'
          value: containerGroupPolicy
        }
        {
          name: 'ROTATION_OPT_OUT_TAG'
          value: optOutTag
        }
        {
          name: 'ROTATION_NEW_VERSION_EXPIRY_DAYS'
          value: string(newVersionExpiryDays)
        }
        {
          name: 'ROTATION_EXPIRY_WINDOW_DAYS'
          value: string(expiryWindowDays)
        }
        {
          name: 'ROTATION_SWEEP_SCHEDULE'
          value: sweepSchedule
        }
        {
          name: 'ROTATION_DEFER_TO_KEY_POLICY'
          value: deferToKeyPolicy ? 'true' : 'false'
        }
        {
          name: 'ROTATION_OUTCOME_TOPIC_ENDPOINT'
          value: outcomeTopicEndpoint
        }
        {
          name: 'ROTATION_POLL_INTERVAL_SECONDS'
          value: pollIntervalSeconds
        }
        {
          name: 'ROTATION_RETRY_INITIAL_SECONDS'
          value: retryInitialSeconds
        }
        {
          name: 'ROTATION_RETRY_MAX_SECONDS'
          value: retryMaxSeconds
        }
        {
          name: 'ROTATION_RETRY_ATTEMPTS'
          value: string(retryAttempts)
        }
        {
          name: 'ROTATION_LEASE_SECONDS'
          value: string(leaseSeconds)
        }
        {
          name: 'ROTATION_WAVE_SOAK_MINUTES'
          value: string(waveSoakMinutes)
        }
        {
          name: 'ROTATION_WAVE_RECHECK_SECONDS'
          value: string(waveRecheckSeconds)
        }
        {
          name: 'ROTATION_REPORT_MAX_AGE_DAYS'
          value: string(reportMaxAgeDays)
        }
        {
          name: 'ROTATION_REVERT_GUARD_DAYS'
          value: string(revertGuardDays)
        }
        {
          name: 'ROTATION_SHARD_THRESHOLD'
          value: string(shardThreshold)
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// No FTP or basic-auth SCM publishing: code is deployed with an Entra ID token.
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

// App Service authentication: every HTTP route needs an Entra ID token for the app
// registration (whose app roles are Rotation.Plan, Rotation.Execute, Rotation.Replay),
// so X-MS-CLIENT-PRINCIPAL-NAME/-ID name the person who acted. The Event Grid webhook is
// excluded: Event Grid cannot present a token and is checked by the extension system key.
resource auth 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13: this IS the authentication (authsettingsV2: platform.enabled); the check reads the v1 shape
  // checkov:skip=CKV_AZURE_63: web-app logging check applied to the auth resource; logs go to Application Insights
  // checkov:skip=CKV_AZURE_65: web-app logging check applied to the auth resource; logs go to Application Insights
  // checkov:skip=CKV_AZURE_66: web-app logging check applied to the auth resource; logs go to Application Insights
  // checkov:skip=CKV_AZURE_80: .NET version check applied to the auth resource of a Python app
  // checkov:skip=CKV_AZURE_88: Azure Files check applied to the auth resource; the app mounts no share
  // checkov:skip=CKV_AZURE_222: public access check applied to the auth resource, see the site
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: [
        '/runtime/webhooks/eventgrid'
        '/runtime/webhooks/EventGrid'
      ]
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: authClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${authTenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${authClientId}'
            authClientId
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

output functionAppId string = site.id
output functionAppName string = site.name
output defaultHostName string = site.properties.defaultHostName
