"""Managed HSM hosts: allowed in ROTATION_ALLOWED_VAULTS next to vaults, per cloud; key ids and
their parts; requests and queue messages carrying an HSM key."""

from __future__ import annotations

import pytest

from rotation.azure.kinds import accepted_types
from rotation.config import ConfigError, load_settings
from rotation.model.ids import is_managed_hsm_host, parse_key_id
from rotation.model.request import new_request
from rotation.storage.queue import decode, encode

BASE = {
    "ROTATION_SUBSCRIPTIONS": "00000000-0000-0000-0000-000000000001",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
}
VERSION = "0123456789abcdef0123456789abcdef"


def test_vault_and_hsm_hosts_are_both_allowed() -> None:
    settings = load_settings(
        {**BASE, "ROTATION_ALLOWED_VAULTS": "contoso-cmk.vault.azure.net, Contoso-HSM.managedhsm.azure.net"}
    )
    assert settings.allowed_vaults == {"contoso-cmk.vault.azure.net", "contoso-hsm.managedhsm.azure.net"}
    assert settings.vault_allowed("contoso-hsm.managedhsm.azure.net")


@pytest.mark.parametrize(
    ("cloud", "host", "ok"),
    [
        ("AzureChinaCloud", "pool1.managedhsm.azure.cn", True),
        ("AzureChinaCloud", "pool1.managedhsm.azure.net", False),
        ("AzureUSGovernment", "pool1.managedhsm.usgovcloudapi.net", True),
        ("AzurePublicCloud", "pool1.managedhsm.azure.net.evil.example", False),
        ("AzurePublicCloud", "p.managedhsm.azure.net", False),  # names are 3-24 characters
        ("AzurePublicCloud", "pool_1.managedhsm.azure.net", False),
    ],
)
def test_hsm_hosts_follow_the_cloud_and_the_name_rules(cloud: str, host: str, ok: bool) -> None:
    env = {**BASE, "ROTATION_CLOUD": cloud, "ROTATION_ALLOWED_VAULTS": host}
    if ok:
        assert load_settings(env).allowed_vaults == {host}
    else:
        with pytest.raises(ConfigError, match=r"ROTATION_ALLOWED_VAULTS.*managedhsm"):
            load_settings(env)


def test_hsm_key_ids_parse_and_say_where_they_live() -> None:
    key = parse_key_id(f"https://Contoso-HSM.managedhsm.azure.net/keys/tde-key/{VERSION}")
    assert (key.vault_host, key.vault_name, key.name, key.version) == (
        "contoso-hsm.managedhsm.azure.net",
        "contoso-hsm",
        "tde-key",
        VERSION,
    )
    assert key.in_managed_hsm and key.vault_url == "https://contoso-hsm.managedhsm.azure.net"
    assert not parse_key_id("https://contoso-cmk.vault.azure.net/keys/k").in_managed_hsm
    assert is_managed_hsm_host("pool.managedhsm.usgovcloudapi.net")
    assert not is_managed_hsm_host("managedhsm.azure.net.example.com")


def test_an_hsm_key_round_trips_through_a_queue_message() -> None:
    key = parse_key_id("https://contoso-hsm.managedhsm.azure.net/keys/tde-key")
    request = new_request(key, "sweep", "sweep")
    again = decode(encode(request), accepted_types())
    assert again.key == key and again.key_id == key.versionless_id
