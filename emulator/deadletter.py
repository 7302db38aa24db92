"""Where Event Grid writes dead letters: a blob container in a storage account (Azurite here)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient, ContentSettings


def blob_writer(connection_string: str, container: str) -> Callable[[str, bytes], None]:
    """A function that writes one dead-letter blob; the container is made on first use."""
    client = BlobServiceClient.from_connection_string(connection_string).get_container_client(container)

    def write(path: str, content: bytes) -> None:
        with contextlib.suppress(ResourceExistsError):
            client.create_container()
        client.upload_blob(path, content, content_settings=ContentSettings(content_type="application/json"))

    return write
