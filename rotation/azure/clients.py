"""SDK clients, built once per process: one credential, one connection pool, SDK retries off.

Endpoints come from settings only (the cloud's ARM endpoint, the vault hosts in key ids, the
storage settings); nothing here knows whether it talks to Azure or to the local emulator.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ClientAuthenticationError

from rotation.azure.budgeted import BudgetedTransport
from rotation.azure.links import HostGuardPolicy, origin
from rotation.azure.pacing import Pacer, PacingPolicy
from rotation.azure.requestid import RandomRequestIdPolicy
from rotation.azure.session import Connections
from rotation.config import MAX_PARALLEL_TARGETS, Settings

# The SDKs load on first use (the builders below), not with function_app: a cold start pays
# only for the clients its door calls.
if TYPE_CHECKING:
    from azure.data.tables import TableServiceClient
    from azure.keyvault.keys import KeyClient
    from azure.mgmt.containerinstance import ContainerInstanceManagementClient
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueClient

    from rotation.azure.arm import Arm
    from rotation.azure.curl import BudgetedCurlTransport
    from rotation.azure.polling import WaitFirstARMPolling
    from rotation.azure.topic import OutcomeTopic

T = TypeVar("T")
_NO_SDK_RETRIES: dict[str, Any] = {"retry_total": 0}  # retry.py is the one retry layer


class CredentialMissing(Exception):
    """No credential could sign in. `str()` is one line naming what was tried; `detail` is the
    credential's own account of each attempt."""

    def __init__(self, tried: list[str], detail: str) -> None:
        names = ", ".join(name.removesuffix("Credential") for name in tried)
        super().__init__(
            f"no Azure sign-in found (tried {names}): run `az login`, or for the local stack "
            "`set -a; . ./.env.emulator; set +a`"
        )
        self.tried, self.detail = tried, detail


# (connect, read) seconds per attempt. A read timeout is what ends a call to an endpoint that
# accepts the connection and never answers (azure-core's default is 300 s for both).
STORAGE_TIMEOUTS = (5.0, 10.0)
AZURE_TIMEOUTS = (10.0, 60.0)  # Key Vault and ARM: an LRO's poll answers at once, a PUT in seconds


def _storage_options() -> dict[str, Any]:
    """Storage calls are not wrapped by retry.py; the SDK's own retry is their one layer, kept
    short (about 3 s of waits) so Event Grid's 30 s answer window survives a storage outage; the
    door's budget (budget.py) cuts what is left."""
    from azure.storage.queue import ExponentialRetry  # the shared storage retry, any service's

    return {
        # waits of 0.5 s and 2.5 s (±0.5 s) between three attempts
        "retry_policy": ExponentialRetry(  # the SDK annotates ints but computes in floats
            initial_backoff=0.5,  # type: ignore[arg-type]
            increment_base=2,
            retry_total=2,
            random_jitter_range=0.5,  # type: ignore[arg-type]
        ),
    }


class Clients:
    """Lazily built, cached clients. Safe to share between threads."""

    def __init__(
        self,
        settings: Settings,
        credential: TokenCredential | None = None,
        *,
        storage_request_hook: Callable[[Any], None] | None = None,
    ) -> None:
        """`storage_request_hook`: called with every storage request before it is sent (a
        request counter, say): azure-core's `raw_request_hook`, which every storage client's
        pipeline keeps, including the table clients a service client hands out."""
        self.settings = settings
        self._credential = credential
        self._storage_hook = storage_request_hook
        self._connections = Connections(MAX_PARALLEL_TARGETS + 8)  # a connection for every worker thread
        self._cache: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self.pacer = Pacer(max_wait=settings.max_retry_after_seconds)

    @property
    def credential(self) -> TokenCredential:
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            with self._lock:
                if self._credential is None:
                    self._credential = DefaultAzureCredential(
                        managed_identity_client_id=self.settings.client_id,
                        exclude_interactive_browser_credential=True,
                        transport=self._transport(),  # token requests keep the door's budget too
                    )
        return self._credential

    def check_credential(self) -> None:
        """Get one ARM token (the credential caches it), so a missing sign-in fails once, fast."""
        try:
            self.credential.get_token(self.settings.cloud.arm_scope)
        except ClientAuthenticationError as exc:
            detail = str(exc.message or exc)
            tried = re.findall(r"^\s*(\w+Credential):", detail, re.MULTILINE)
            raise CredentialMissing(tried or [type(self.credential).__name__], detail) from exc

    def _transport(self, timeouts: tuple[float, float] = AZURE_TIMEOUTS) -> BudgetedTransport:
        """Storage's, the credential's and the outcome topic's transport: the door's budget."""
        connect, read = timeouts
        return BudgetedTransport(connections=self._connections, connection_timeout=connect, read_timeout=read)

    def _azure_transport(self) -> BudgetedCurlTransport:
        """Key Vault's and ARM's: also the run's budget, the answer limit, capped waits; on
        libcurl (curl.py), the process-wide handles: most of the product's calls go this way.
        libcurl loads here, on first use (30 ms), not with function_app."""
        from rotation.azure.curl import BudgetedCurlTransport

        connect, read = AZURE_TIMEOUTS
        return BudgetedCurlTransport(
            connection_timeout=connect,
            read_timeout=read,
            answer_limit=self.settings.max_response_bytes,
            max_wait=self.settings.max_retry_after_seconds,
        )

    def _cached(self, kind: str, key: str, build: Callable[[], T]) -> T:
        with self._lock:
            client = self._cache.get((kind, key))
        if client is None:
            built = build()
            with self._lock:
                client = self._cache.setdefault((kind, key), built)
        return client

    # -- Key Vault and ARM ---------------------------------------------------------------------
    def keys(self, vault_url: str) -> KeyClient:
        from azure.keyvault.keys import KeyClient

        return self._cached(
            "keys",
            vault_url.lower(),
            lambda: KeyClient(
                vault_url,
                self.credential,
                transport=self._azure_transport(),
                # nothing this client sends leaves the vault, a link the SDK follows included
                custom_hook_policy=HostGuardPolicy(origin(vault_url)),
                per_call_policies=[RandomRequestIdPolicy()],  # first: azure-core's then keeps its id
                **_NO_SDK_RETRIES,
            ),
        )

    def _arm_kwargs(self) -> dict[str, Any]:
        return {
            "base_url": self.settings.cloud.arm_endpoint,
            "credential_scopes": [self.settings.cloud.arm_scope],
            "transport": self._azure_transport(),
            "polling_interval": self.settings.poll_interval_seconds,
            # every ARM call, whichever client makes it, is paced by one per-subscription gate;
            # a request to any other host than the ARM endpoint is refused before it is sent
            "custom_hook_policy": HostGuardPolicy(
                origin(self.settings.cloud.arm_endpoint), PacingPolicy(self.pacer)
            ),
            **_NO_SDK_RETRIES,
        }

    def lro_polling(self) -> WaitFirstARMPolling:
        """The polling method for a long-running ARM write: waits Retry-After before polling."""
        from rotation.azure.polling import WaitFirstARMPolling

        return WaitFirstARMPolling(
            self.settings.poll_interval_seconds, origin=origin(self.settings.cloud.arm_endpoint)
        )

    # The typed management SDKs are imported on first use, not with function_app: a cold start
    # that only parses and enqueues an event never pays for them.
    def container_instances(self, subscription: str) -> ContainerInstanceManagementClient:
        from azure.mgmt.containerinstance import ContainerInstanceManagementClient

        return self._management("aci", subscription, ContainerInstanceManagementClient)

    def _management(self, kind: str, subscription: str, client_type: Callable[..., T]) -> T:
        """One typed management client a subscription, built with the ARM endpoint and transport."""
        return self._cached(
            kind, subscription, lambda: client_type(self.credential, subscription, **self._arm_kwargs())
        )

    def outcome_topic(self, endpoint: str) -> OutcomeTopic:
        """The Event Grid topic outcome events go to: no retries of its own, retried by retry.py."""
        from rotation.azure.topic import OutcomeTopic

        return self._cached(
            "outcomes", endpoint.lower(), lambda: OutcomeTopic(endpoint, self.credential, self._transport())
        )

    def arm(self) -> Arm:
        """Generic ARM calls by resource id (kinds without a typed SDK); one for all subscriptions."""
        from rotation.azure.arm import Arm

        return self._cached(
            "arm",
            "",
            lambda: Arm(
                self.credential,
                self.settings.cloud.arm_endpoint,
                [self.settings.cloud.arm_scope],
                self._azure_transport(),
                self.settings.poll_interval_seconds,
                PacingPolicy(self.pacer),
            ),
        )

    # -- storage ---------------------------------------------------------------------------------
    def _storage_credential(self) -> TokenCredential:
        storage = self.settings.storage
        if storage.credential == "managedidentity":
            from azure.identity import ManagedIdentityCredential

            return self._cached(
                "storage-credential",
                storage.client_id or "",
                lambda: ManagedIdentityCredential(
                    client_id=storage.client_id, transport=self._transport(STORAGE_TIMEOUTS)
                ),
            )
        return self.credential

    def _storage_kwargs(self) -> dict[str, Any]:
        return {
            "transport": self._transport(STORAGE_TIMEOUTS),
            **({"raw_request_hook": self._storage_hook} if self._storage_hook else {}),
            **_storage_options(),
        }

    def _storage_client(self, kind: str, cls: Any, uri: str | None, *args: Any, **extra: Any) -> Any:
        storage = self.settings.storage

        def build() -> Any:
            if storage.connection_string:
                return cls.from_connection_string(
                    storage.connection_string, *args, **self._storage_kwargs(), **extra
                )
            return cls(uri, *args, credential=self._storage_credential(), **self._storage_kwargs(), **extra)

        return self._cached(kind, "/".join(args), build)

    def tables(self) -> TableServiceClient:
        from azure.data.tables import TableServiceClient

        return self._storage_client(
            "tables",
            TableServiceClient,
            self.settings.storage.table_service_uri,
            per_call_policies=[RandomRequestIdPolicy()],
        )

    def blobs(self) -> BlobServiceClient:
        from azure.storage.blob import BlobServiceClient

        return self._storage_client("blobs", BlobServiceClient, self.settings.storage.blob_service_uri)

    def raw_queue(self, name: str) -> QueueClient:
        """A queue client that hands message content over as stored (no base64 decoding), for
        reading poison messages that may not be base64 at all."""
        from azure.storage.queue import QueueClient

        return self._storage_client("raw-queue", QueueClient, self.settings.storage.queue_service_uri, name)

    def queue(self, name: str) -> QueueClient:
        """A queue client that base64-encodes text, as the Functions queue trigger expects."""
        from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

        return self._storage_client(
            "queue",
            QueueClient,
            self.settings.storage.queue_service_uri,
            name,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
        )
