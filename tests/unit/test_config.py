"""Settings: validated at start, errors name the setting, the sample settings file is valid."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rotation.config import ConfigError, load_settings

BASE = {
    "ROTATION_ALLOWED_VAULTS": "contoso-cmk.vault.azure.net, fabrikam-cmk.vault.azure.net",
    "ROTATION_SUBSCRIPTIONS": "00000000-0000-0000-0000-000000000001",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
}


def test_defaults() -> None:
    settings = load_settings(BASE)
    assert settings.allowed_vaults == {"contoso-cmk.vault.azure.net", "fabrikam-cmk.vault.azure.net"}
    assert settings.cloud.arm_endpoint == "https://management.azure.com"
    assert (settings.concurrency, settings.time_budget_seconds) == (16, 600)
    assert settings.lanes_follow_arm  # ROTATION_CONCURRENCY=auto
    assert settings.container_group_policy == "report" and settings.opt_out_tag == "cmk-rotation"
    assert settings.new_version_expiry_days == 365 and settings.expiry_window_days == 30
    assert settings.sweep_schedule == "0 0 * * * *" and settings.defer_to_key_policy is True
    assert settings.outcome_topic_endpoint is None
    assert settings.revert_guard_days == 30
    assert settings.lease_wait_seconds == 3600  # a waiter comes back when the held lease would expire
    assert settings.resume_after_seconds == 10  # an interrupted run's rest, on another instance


def test_lease_wait_can_be_shortened() -> None:
    assert load_settings({**BASE, "ROTATION_LEASE_WAIT_SECONDS": "0"}).lease_wait_seconds == 0


def test_resume_after_can_be_shortened() -> None:
    assert load_settings({**BASE, "ROTATION_RESUME_AFTER_SECONDS": "1"}).resume_after_seconds == 1


@pytest.mark.parametrize(
    ("text", "width", "follows"), [("auto", 16, True), (" AUTO ", 16, True), ("8", 8, False)]
)
def test_concurrency_is_auto_or_a_fixed_width(text: str, width: int, follows: bool) -> None:
    settings = load_settings({**BASE, "ROTATION_CONCURRENCY": text})
    assert (settings.concurrency, settings.lanes_follow_arm) == (width, follows)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"ROTATION_ALLOWED_VAULTS": ""}, "ROTATION_ALLOWED_VAULTS"),
        ({"ROTATION_ALLOWED_VAULTS": "contoso-cmk.vault.azure.cn"}, "ROTATION_ALLOWED_VAULTS"),
        ({"ROTATION_SUBSCRIPTIONS": "not-a-guid"}, "ROTATION_SUBSCRIPTIONS"),
        ({"ROTATION_CONCURRENCY": "0"}, "ROTATION_CONCURRENCY"),
        ({"ROTATION_CONCURRENCY": "many"}, "ROTATION_CONCURRENCY"),
        ({"ROTATION_CONCURRENCY": "257"}, "ROTATION_CONCURRENCY"),
        ({"ROTATION_DISCOVERY": "graph"}, "ROTATION_DISCOVERY"),
        ({"ROTATION_EXECUTION": "async"}, "ROTATION_EXECUTION"),
        ({"ROTATION_CONTAINER_GROUP_POLICY": "always"}, "ROTATION_CONTAINER_GROUP_POLICY"),
        ({"ROTATION_CLOUD": "Mars"}, "ROTATION_CLOUD"),
        ({"ROTATION_CLOUD": "Custom"}, "ROTATION_ARM_ENDPOINT"),
        ({"ROTATION_ARM_ENDPOINT": "https://arm.example"}, "ROTATION_ARM_ENDPOINT"),
        ({"ROTATION_DEFER_TO_KEY_POLICY": "maybe"}, "ROTATION_DEFER_TO_KEY_POLICY"),
        ({"ROTATION_SWEEP_SCHEDULE": "hourly"}, "ROTATION_SWEEP_SCHEDULE"),
        (
            {"ROTATION_OUTCOME_TOPIC_ENDPOINT": "http://topic.example/api/events"},
            "ROTATION_OUTCOME_TOPIC_ENDPOINT",
        ),
        ({"ROTATION_NEW_VERSION_EXPIRY_DAYS": "7"}, "ROTATION_NEW_VERSION_EXPIRY_DAYS"),
        ({"AZURE_CLIENT_ID": "me"}, "AZURE_CLIENT_ID"),
        ({"ROTATION_REVERT_GUARD_DAYS": "-1"}, "ROTATION_REVERT_GUARD_DAYS"),
        ({"ROTATION_REVERT_GUARD_DAYS": "a month"}, "ROTATION_REVERT_GUARD_DAYS"),
        ({"ROTATION_SHARD_THRESHOLD": "0"}, "ROTATION_SHARD_THRESHOLD"),
        ({"ROTATION_SHARD_THRESHOLD": "many"}, "ROTATION_SHARD_THRESHOLD"),
        ({"ROTATION_LEASE_WAIT_SECONDS": "-1"}, "ROTATION_LEASE_WAIT_SECONDS"),
        ({"ROTATION_LEASE_WAIT_SECONDS": "3601"}, "ROTATION_LEASE_WAIT_SECONDS"),
        ({"ROTATION_RESUME_AFTER_SECONDS": "-1"}, "ROTATION_RESUME_AFTER_SECONDS"),
        ({"ROTATION_RESUME_AFTER_SECONDS": "3601"}, "ROTATION_RESUME_AFTER_SECONDS"),
        ({"AzureWebJobsStorage": ""}, "AzureWebJobsStorage"),
    ],
)
def test_errors_name_the_setting(overrides: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({**BASE, **overrides})
    assert str(error.value).startswith(named)


def test_sovereign_and_custom_clouds() -> None:
    china = load_settings(
        {**BASE, "ROTATION_CLOUD": "AzureChinaCloud", "ROTATION_ALLOWED_VAULTS": "contoso.vault.azure.cn"}
    )
    assert china.cloud.arm_scope == "https://management.chinacloudapi.cn/.default"
    custom = load_settings(
        {
            **BASE,
            "ROTATION_CLOUD": "Custom",
            "ROTATION_ARM_ENDPOINT": "https://arm.stack.local/",
            "ROTATION_ALLOWED_VAULTS": "kv1.vault.stack.local",
        }
    )
    assert custom.cloud.arm_endpoint == "https://arm.stack.local" and custom.vault_allowed(
        "KV1.vault.stack.local"
    )


def test_identity_based_storage() -> None:
    env = {k: v for k, v in BASE.items() if k != "AzureWebJobsStorage"}
    with pytest.raises(ConfigError, match="AzureWebJobsStorage__tableServiceUri"):
        load_settings({**env, "AzureWebJobsStorage__queueServiceUri": "https://st.queue.core.windows.net"})
    settings = load_settings(
        {
            **env,
            "AzureWebJobsStorage__accountName": "stcmk",
            "AzureWebJobsStorage__credential": "managedidentity",
            "AzureWebJobsStorage__clientId": "11111111-2222-3333-4444-555555555555",
        }
    )
    assert settings.storage.table_service_uri == "https://stcmk.table.core.windows.net"
    assert settings.storage.credential == "managedidentity"


def test_local_settings_sample_is_complete_and_valid() -> None:
    sample = json.loads((Path(__file__).resolve().parents[2] / "local.settings.sample.json").read_text())
    values = sample["Values"]
    settings = load_settings(values)
    assert settings.subscriptions
    section7 = [
        "ROTATION_ALLOWED_VAULTS",
        "ROTATION_SUBSCRIPTIONS",
        "ROTATION_CLOUD",
        "ROTATION_ARM_ENDPOINT",
        "ROTATION_CONCURRENCY",
        "ROTATION_DISCOVERY",
        "ROTATION_TIME_BUDGET_SECONDS",
        "ROTATION_MAX_RETRY_AFTER_SECONDS",
        "ROTATION_MAX_RESPONSE_BYTES",
        "ROTATION_CONTAINER_GROUP_POLICY",
        "ROTATION_OPT_OUT_TAG",
        "ROTATION_NEW_VERSION_EXPIRY_DAYS",
        "ROTATION_EXPIRY_WINDOW_DAYS",
        "ROTATION_SWEEP_SCHEDULE",
        "ROTATION_DEFER_TO_KEY_POLICY",
        "ROTATION_OUTCOME_TOPIC_ENDPOINT",
        "ROTATION_REVERT_GUARD_DAYS",
        "ROTATION_SHARD_THRESHOLD",
        "AzureWebJobsStorage",
        "AZURE_CLIENT_ID",
    ]
    assert [name for name in section7 if name not in values] == []
    assert "AccountKey" not in json.dumps(sample)  # no secrets in the sample


def test_local_settings_sample_names_every_setting_the_product_reads() -> None:
    # A setting added to config.py and forgotten in the sample is one a user never learns of.
    repo = Path(__file__).resolve().parents[2]
    read = set(re.findall(r'"(ROTATION_[A-Z0-9_]+)"', (repo / "rotation" / "config.py").read_text()))
    values = json.loads((repo / "local.settings.sample.json").read_text())["Values"]
    assert read and sorted(read - set(values)) == []
