"""Key Vault reads: a key's versions, its desired version, and preflight facts.

Only attributes and public metadata are read (never key material): listing versions gives
enabled/nbf/exp/created; the key type and operations come from `get_key` on the one or two
versions that are candidates for "desired", so a typical read costs two calls. Listing follows
a `nextLink` only to the vault the key is in, never one twice, at most links.MAX_PAGES pages.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from rotation.azure.links import MAX_PAGES, PageGuard, origin
from rotation.model.errors import Hint
from rotation.model.ids import KeyRef
from rotation.model.keystate import KeyState, VersionInfo

if TYPE_CHECKING:
    from azure.keyvault.keys import KeyClient

KEY_VAULT_HINTS = (
    Hint(
        403,
        None,
        "The rotation identity lacks Key Vault permissions: grant the custom rotation role (keys read, rotate, "
        "update, read rotation policy) on the vault (infra/README.md).",
    ),
)


@dataclass(frozen=True)
class RotationPolicyInfo:
    expires_after: str | None  # ISO 8601 duration, e.g. P1Y
    has_rotate_action: bool
    notify_before_expiry: str | None


def _rsa_bits(jwk: Any) -> int | None:
    """The modulus length of a public RSA JWK (public: Key Vault returns it with every key)."""
    modulus = getattr(jwk, "n", None)
    return len(modulus.lstrip(b"\0")) * 8 if isinstance(modulus, bytes) and modulus else None


def _bundle_info(bundle: Any) -> VersionInfo:
    info = _info(bundle.properties, bundle.key_type, bundle.key_operations)
    return replace(info, key_size=_rsa_bits(getattr(bundle, "key", None)))


def _info(properties, key_type: str | None = None, key_ops: list[str] | None = None) -> VersionInfo:
    return VersionInfo(
        version=properties.version.lower(),
        enabled=bool(properties.enabled),
        created=properties.created_on,
        not_before=properties.not_before,
        expires=properties.expires_on,
        key_type=str(key_type.value if hasattr(key_type, "value") else key_type) if key_type else None,
        key_ops=tuple(str(getattr(op, "value", op)) for op in key_ops) if key_ops is not None else None,
    )


def read_key_state(
    client: KeyClient, key: KeyRef, now: datetime | None = None, *, max_pages: int = MAX_PAGES
) -> KeyState:
    """Read every version's attributes and decide the desired version (DESIGN.md section 7);
    at most `max_pages` pages of versions (a test proves the limit with a small one)."""
    now = now or datetime.now(UTC)
    latest = client.get_key(key.name)
    current = _bundle_info(latest)
    by_version = {current.version: current}
    for properties in _list_versions(client, key, max_pages):
        info = _info(properties)
        by_version.setdefault(info.version, info)
    versions = sorted(by_version.values(), key=lambda v: (v.created, v.version == current.version))
    state = KeyState(
        key.versionless(), tuple(versions), current.version, None, None, latest.properties.recovery_level
    )
    desired, blocked = _choose_desired(client, key, state, now)
    details = {v.version: v for v in state.versions}
    if desired is not None:
        details[desired.version] = desired
    ordered = tuple(details[v.version] for v in versions)
    return KeyState(state.key, ordered, current.version, desired, blocked, state.recovery_level)


def _list_versions(client: KeyClient, key: KeyRef, max_pages: int = MAX_PAGES) -> Iterator[Any]:
    """Every version's properties, page by page; each `nextLink` is checked before it is followed
    (the SDK's pager would follow any, with the vault's token)."""
    pages = client.list_properties_of_key_versions(key.name).by_page()
    guard = PageGuard(origin(client.vault_url), f"key {key.name}'s version list", max_pages)
    while True:
        try:
            page = next(pages)
        except StopIteration:
            return
        yield from page
        link = pages.continuation_token  # type: ignore[attr-defined]  # the next page's link, or None
        if not link:
            return
        guard.next(link)


def _choose_desired(
    client: KeyClient, key: KeyRef, state: KeyState, now: datetime
) -> tuple[VersionInfo | None, str | None]:
    """Newest usable version; when none is usable, the reason the newest one is not."""
    first_reason: str | None = None
    for candidate in reversed(state.versions):
        reason = candidate.time_problem(now)
        if reason is None:
            detailed = candidate if candidate.key_type else _details(client, key, candidate)
            reason = detailed.crypto_problem()
            if reason is None:
                return detailed, None
        first_reason = first_reason or reason
    return None, first_reason or "version-disabled"


def _details(client: KeyClient, key: KeyRef, info: VersionInfo) -> VersionInfo:
    return _bundle_info(client.get_key(key.name, info.version))


def read_rotation_policy(client: KeyClient, key: KeyRef) -> RotationPolicyInfo:
    try:
        policy = client.get_key_rotation_policy(key.name)
    except ResourceNotFoundError:
        return RotationPolicyInfo(None, False, None)
    except HttpResponseError as exc:
        if exc.status_code == 403:  # no permission to read policies: behave as if none
            return RotationPolicyInfo(None, False, None)
        raise
    rotate = False
    notify = None
    for action in policy.lifetime_actions or []:
        kind = str(getattr(action.action, "value", action.action)).lower()
        if kind == "rotate":
            rotate = True
        elif kind == "notify":
            notify = action.time_before_expiry
    return RotationPolicyInfo(policy.expires_in, rotate, notify)


def rotate_version(client: KeyClient, key: KeyRef) -> VersionInfo:
    """One Key Vault rotate (a POST: the caller must not retry it blindly). The new version keeps
    the key's type and size and takes its expiry from the key's rotation policy."""
    return _bundle_info(client.rotate_key(key.name))


def versions_not_in(client: KeyClient, key: KeyRef, known: set[str]) -> list[VersionInfo]:
    """Versions that exist now but were not in `known`, newest last: after an unclear rotate,
    these say whether it happened."""
    found = [_info(p) for p in _list_versions(client, key) if (p.version or "").lower() not in known]
    return sorted(found, key=lambda v: v.created)


def set_expiry(client: KeyClient, key: KeyRef, version: str, expires: datetime) -> None:
    """Give a version an expiry (idempotent: the same PATCH twice leaves the same state)."""
    client.update_key_properties(key.name, version, expires_on=expires)


def disable_version(client: KeyClient, key: KeyRef, version: str) -> VersionInfo:
    return set_version_enabled(client, key, version, enabled=False)


def set_version_enabled(client: KeyClient, key: KeyRef, version: str, *, enabled: bool) -> VersionInfo:
    """Enable or disable one version (idempotent: the same PATCH twice changes nothing). Only the
    caller's guard (rotation/estate/retire.py) decides whether it may be called."""
    bundle = client.update_key_properties(key.name, version, enabled=enabled)
    return _info(bundle.properties, bundle.key_type, bundle.key_operations)
