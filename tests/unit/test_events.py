"""Event parsing: both schemas, Azure's casing and number quirks, clear rejections, fuzzing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devstack.functions_host import event_grid_events
from rotation.model.events import (
    EXPIRED,
    NEAR_EXPIRY,
    NEW_VERSION,
    EventRejected,
    KeyEvent,
    parse_body,
    parse_function_event,
    parse_mapping,
    strip_dead_letter_fields,
)

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"
ALLOWED = {"contoso-cmk.vault.azure.net"}


def allowed(host: str) -> bool:
    return host in ALLOWED


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


def event(**data_overrides: object) -> dict:
    raw = json.loads(sample("key-new-version.eventgrid.json"))[0]
    raw["data"].update(data_overrides)
    return raw


def test_event_grid_sample_parses_with_string_nbf_exp() -> None:
    [parsed] = parse_body(sample("key-new-version.eventgrid.json"), allowed)
    assert isinstance(parsed, KeyEvent)
    assert parsed.event_type == NEW_VERSION
    assert (
        parsed.key.id == "https://contoso-cmk.vault.azure.net/keys/acr-cmk/9b1e4c0d2f8a4e6b8c7d5a3f1e2d4c6b"
    )
    assert (parsed.not_before, parsed.expires) == (1795165200, 1826701200)
    assert parsed.schema == "EventGridSchema"
    assert parsed.event_time is not None and parsed.event_time.year == 2026


def test_cloudevents_sample_parses_with_numeric_nbf_exp() -> None:
    parsed = parse_mapping(json.loads(sample("key-near-expiry.cloudevent.json")), allowed)
    assert parsed.event_type == NEAR_EXPIRY
    assert parsed.key.name == "batch-cmk" and parsed.version == "1a2b3c4d5e6f47788990aabbccddeeff"
    assert (parsed.not_before, parsed.expires) == (1766275200, 1797811200)
    assert parsed.schema == "CloudEventSchemaV1_0"


def test_function_objects_built_by_the_host_converters_parse() -> None:
    """The host hands a CloudEvents delivery over as func.CloudEvent, not EventGridEvent."""
    [eg] = event_grid_events(sample("key-new-version.eventgrid.json"))
    [ce] = event_grid_events(sample("key-near-expiry.cloudevent.json"))
    assert type(ce).__name__ == "CloudEvent" and type(eg).__name__ == "EventGridEvent"
    assert parse_function_event(eg, allowed).event_type == NEW_VERSION
    assert parse_function_event(ce, allowed).event_type == NEAR_EXPIRY


def test_dead_letter_entries_parse_once_stripped() -> None:
    [raw] = json.loads(sample("deadletter-blob.eventgrid.json"))
    original = strip_dead_letter_fields(raw)
    assert "deadLetterReason" not in original and "deliveryAttempts" not in original
    assert parse_mapping(original, allowed).version == "5e6f7a8b9c0d4e1f8a2b3c4d5e6f7a8b"


def test_field_names_are_case_insensitive_and_trimmed() -> None:
    raw = event()
    raw["data"] = {
        " id ": " " + raw["data"]["Id"] + " ",
        "VAULTNAME": " contoso-cmk ",
        "objectname": "ACR-CMK",
        "objectType": "key",
        "version": raw["data"]["Version"].upper(),
    }
    raw["eventType"] = "microsoft.keyvault.keynewversioncreated"
    parsed = parse_mapping(raw, allowed)
    assert parsed.event_type == NEW_VERSION
    assert parsed.key.name == "acr-cmk" and parsed.not_before is None and parsed.expires is None


@pytest.mark.parametrize(
    ("nbf", "expected"), [(1795165200, 1795165200), ("1795165200", 1795165200), ("1.7e9", None), (None, None)]
)
def test_nbf_accepts_numbers_numeric_strings_or_absence(nbf: object, expected: int | None) -> None:
    if nbf == "1.7e9":
        with pytest.raises(EventRejected) as rejected:
            parse_mapping(event(NBF=nbf), allowed)
        assert rejected.value.reason == "malformed" and "NBF" in rejected.value.message
        return
    assert parse_mapping(event(NBF=nbf), allowed).not_before == expected


@pytest.mark.parametrize(
    ("event_type", "reason"),
    [
        ("Microsoft.KeyVault.SecretNewVersionCreated", "unsupported-type"),
        ("Microsoft.KeyVault.CertificateNearExpiry", "unsupported-type"),
        ("Microsoft.Storage.BlobCreated", "unsupported-type"),
    ],
)
def test_other_event_types_are_rejected_with_a_reason(event_type: str, reason: str) -> None:
    raw = event()
    raw["eventType"] = event_type
    with pytest.raises(EventRejected) as rejected:
        parse_mapping(raw, allowed)
    assert rejected.value.reason == reason
    assert rejected.value.event_id == raw["id"]
    assert event_type in rejected.value.message


def test_key_in_a_vault_not_allowed_is_rejected() -> None:
    raw = event(
        Id="https://evil-vault.vault.azure.net/keys/acr-cmk/9b1e4c0d2f8a4e6b8c7d5a3f1e2d4c6b",
        VaultName="evil-vault",
    )
    with pytest.raises(EventRejected) as rejected:
        parse_mapping(raw, allowed)
    assert rejected.value.reason == "vault-not-allowed"
    assert "ROTATION_ALLOWED_VAULTS" in rejected.value.message


@pytest.mark.parametrize(
    "data",
    [
        {"ObjectName": "other-key"},  # disagrees with Id
        {"Id": "https://contoso-cmk.vault.azure.net/keys/acr-cmk"},  # no version
        {"Id": "https://contoso-cmk.vault.azure.net/secrets/acr-cmk/9b1e4c0d2f8a4e6b8c7d5a3f1e2d4c6b"},
        {"Id": "https://contoso-cmk.vault.azure.net:8443/keys/acr-cmk/9b1e4c0d2f8a4e6b8c7d5a3f1e2d4c6b"},
        {"Id": "https://contoso-cmk.vault.azure.net/keys/acr-cmk/9b1e4c0d2f8a4e6b8c7d5a3f1e2d4c6b?x=1"},
        {"Id": 42},
        {"ObjectType": "Secret"},
    ],
)
def test_malformed_data_is_rejected_not_raised(data: dict) -> None:
    with pytest.raises(EventRejected) as rejected:
        parse_mapping(event(**data), allowed)
    assert rejected.value.reason in ("malformed", "unsupported-type")


def test_body_with_several_events_parses_each_on_its_own() -> None:
    good = event()
    bad = event()
    bad["eventType"] = "Microsoft.KeyVault.SecretNearExpiry"
    expired = event()
    expired["eventType"] = EXPIRED
    results = parse_body(json.dumps([good, bad, expired]), allowed)
    assert [type(r).__name__ for r in results] == ["KeyEvent", "EventRejected", "KeyEvent"]
    (malformed,) = parse_body(b"{not json", allowed)
    assert isinstance(malformed, EventRejected) and malformed.reason == "malformed"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_fuzz_any_json_is_parsed_or_rejected_never_crashes(value: object) -> None:
    try:
        parse_mapping(value, allowed)
    except EventRejected as rejected:
        assert rejected.reason in ("malformed", "unsupported-type", "vault-not-allowed")


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["Id", "VaultName", "ObjectName", "ObjectType", "Version", "NBF", "EXP", " id", "Extra"]
        ),
        json_values,
        max_size=8,
    )
)
def test_fuzz_event_data_fields(data: dict) -> None:
    raw = event()
    raw["data"] = data
    try:
        parsed = parse_mapping(raw, allowed)
    except EventRejected:
        return
    assert parsed.key.vault_host in ALLOWED and parsed.key.version is not None


@pytest.mark.parametrize("value", [1e400, float("nan"), "9" * 400, -5, 10**20])
def test_absurd_epochs_are_rejected_not_raised(value: object) -> None:
    with pytest.raises(EventRejected) as rejected:
        parse_mapping(event(EXP=value), allowed)
    assert rejected.value.reason == "malformed"


def test_the_event_type_names_are_the_sdks() -> None:
    # spelled out in rotation/model/events.py so parsing does not import the Event Grid SDK
    from azure.eventgrid import SystemEventNames

    from rotation.model import events as spelled

    assert SystemEventNames.KeyVaultKeyNewVersionCreatedEventName.value == spelled.NEW_VERSION
    assert SystemEventNames.KeyVaultKeyNearExpiryEventName.value == spelled.NEAR_EXPIRY
    assert SystemEventNames.KeyVaultKeyExpiredEventName.value == spelled.EXPIRED
