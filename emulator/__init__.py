"""Local stand-in for Azure Key Vault (keys), Azure Resource Manager (registries, Batch
accounts, container groups), Event Grid topics and the App Service managed identity endpoint.

The product never imports this package: it reaches the emulator only through environment
settings (HTTPS_PROXY, REQUESTS_CA_BUNDLE, IDENTITY_ENDPOINT, ...), exactly as it reaches Azure.
"""

from .runtime import AdminClient, Emulator, EmulatorProcess, read_env_file, use_emulator

__all__ = ["AdminClient", "Emulator", "EmulatorProcess", "read_env_file", "use_emulator"]
