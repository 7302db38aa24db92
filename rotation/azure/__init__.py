"""Talking to Azure: clients, the one retry layer, Key Vault, discovery, consumer kinds."""
