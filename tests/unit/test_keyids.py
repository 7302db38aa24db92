"""Strict parsing of key ids and ARM ids: nothing unvalidated reaches a URL, path or query."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rotation.azure.kinds import parse_target
from rotation.model.ids import (
    CONTAINER_GROUP,
    REGISTRY,
    InvalidId,
    KeyRef,
    key_from_parts,
    parse_key_id,
    parse_resource_id,
)

VERSION = "9b1e4c0d2f8a4e6b8c7d5a3f1e2d4c6b"


def test_key_id_with_and_without_version() -> None:
    key = parse_key_id(f"https://Contoso-CMK.vault.azure.net/keys/acr-cmk/{VERSION.upper()}")
    assert key == KeyRef("contoso-cmk.vault.azure.net", "acr-cmk", VERSION)
    assert key.versionless_id == "https://contoso-cmk.vault.azure.net/keys/acr-cmk"
    assert parse_key_id("https://contoso-cmk.vault.azure.net/keys/acr-cmk/").version is None
    assert key.same_key(parse_key_id("https://contoso-cmk.vault.azure.net/keys/ACR-CMK"))
    assert not key.same_key(parse_key_id("https://other.vault.azure.net/keys/acr-cmk"))


@pytest.mark.parametrize(
    "text",
    [
        "http://contoso-cmk.vault.azure.net/keys/k",
        "https://contoso-cmk.vault.azure.net:444/keys/k",
        "https://user:pw@contoso-cmk.vault.azure.net/keys/k",
        "https://contoso-cmk.vault.azure.net/keys/k?api-version=7.4",
        "https://contoso-cmk.vault.azure.net/keys/k#frag",
        "https://contoso-cmk.vault.azure.net/secrets/k",
        "https://contoso-cmk.vault.azure.net/keys/k/notaversion",
        "https://contoso-cmk.vault.azure.net/keys/k/" + VERSION + "/extra",
        "https://contoso-cmk.vault.azure.net/keys/bad_name",
        "https://contoso-cmk.vault.azure.net/keys/..%2f..",
        "https://contoso cmk.vault.azure.net/keys/k",
        "",
        "   ",
    ],
)
def test_bad_key_ids_are_refused(text: str) -> None:
    with pytest.raises(InvalidId):
        parse_key_id(text)


def test_version_requirements() -> None:
    with pytest.raises(InvalidId, match="version is required"):
        parse_key_id("https://v1.vault.azure.net/keys/k", require_version=True)
    with pytest.raises(InvalidId, match="must not carry a version"):
        parse_key_id(f"https://v1.vault.azure.net/keys/k/{VERSION}", allow_version=False)


def test_a_key_id_read_again_is_not_parsed_again() -> None:
    """A run meets the same few key ids on every target: the second read is the first's answer,
    and what each caller asks (version required or refused) still decides, every time."""
    text = f" https://v1.vault.azure.net/keys/k/{VERSION} "
    assert parse_key_id(text) is parse_key_id(text.strip())
    with pytest.raises(InvalidId, match="must not carry a version"):
        parse_key_id(text, allow_version=False)
    versionless = "https://v1.vault.azure.net/keys/k"
    assert parse_key_id(versionless).version is None
    for _ in range(2):  # a refused id is refused again, not remembered as parsed
        with pytest.raises(InvalidId, match="version is required"):
            parse_key_id(versionless, require_version=True)
        with pytest.raises(InvalidId, match="control characters"):
            parse_key_id("https://v1.vault.azure.net/keys/k\x7f")


def test_key_from_container_group_parts() -> None:
    key = key_from_parts("https://contoso-cmk.vault.azure.net/", "aci-cmk", VERSION)
    assert key.id == f"https://contoso-cmk.vault.azure.net/keys/aci-cmk/{VERSION}"


def test_targets_canonicalise_type_and_refuse_types_no_kind_has() -> None:
    rid = parse_target(
        "/subscriptions/00000000-0000-0000-0000-00000000000A/resourceGroups/rg-1/providers/"
        "microsoft.containerregistry/REGISTRIES/reg1"
    )
    assert rid.full_type == REGISTRY and rid.subscription.endswith("0a")
    assert str(rid).startswith("/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/rg-1/")
    with pytest.raises(InvalidId, match="not one of"):
        parse_target(
            "/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/rg/providers/"
            "Microsoft.KeyVault/vaults/kv1"
        )
    # without expected types only the shape is checked
    vault = parse_resource_id(
        "/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv1",
        None,
    )
    assert vault.full_type == "Microsoft.KeyVault/vaults"
    assert (
        parse_resource_id(
            "/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/rg/providers/"
            "Microsoft.ContainerInstance/containerGroups/g-1",
            (CONTAINER_GROUP,),
        ).name
        == "g-1"
    )


@pytest.mark.parametrize(
    "text",
    [
        "/subscriptions/not-a-guid/resourceGroups/rg/providers/Microsoft.Batch/batchAccounts/b",
        "/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/rg'/providers/Microsoft.Batch/batchAccounts/b",
        "/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/rg/providers/Microsoft.Batch/batchAccounts/b/../x",
        "/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/rg/providers/Microsoft.Batch/batchAccounts/b c",
        "subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/rg/providers/Microsoft.Batch/batchAccounts/b",
    ],
)
def test_bad_resource_ids_are_refused(text: str) -> None:
    with pytest.raises(InvalidId):
        parse_resource_id(text, None)


@given(st.text(max_size=200))
def test_fuzz_key_id_parser_only_raises_invalid_id(text: str) -> None:
    try:
        key = parse_key_id(text)
    except InvalidId:
        return
    assert parse_key_id(key.id) == key  # what it accepts round-trips


@given(st.text(max_size=300))
def test_fuzz_resource_id_parser_only_raises_invalid_id(text: str) -> None:
    try:
        rid = parse_resource_id(text, None)
    except InvalidId:
        return
    assert parse_resource_id(str(rid), None) == rid


@pytest.mark.parametrize(
    "text",
    [
        "/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/rg\n/providers/Microsoft.Batch/batchAccounts/b",
        "/subscriptions/00000000-0000-0000-0000-00000000000a\n/resourceGroups/rg/providers/Microsoft.Batch/batchAccounts/b",
        "/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/rg/providers/Microsoft.Batch/batchAccounts/b\nc",
    ],
)
def test_newlines_never_pass_as_part_of_an_id(text: str) -> None:
    with pytest.raises(InvalidId):
        parse_resource_id(text, None)
    with pytest.raises(InvalidId):
        parse_key_id("https://contoso-cmk.vault.azure.net/keys/k\nx")


# Issue 21 item 6: urlsplit raises ValueError on these (NFKC look-alikes of '@', '/', ':' in the
# host, a port out of range or not a number, an unclosed IPv6 bracket); the parser must refuse
# them as InvalidId like any other bad id, so every door answers 400 / exit 2 / poison.
MALFORMED_KEY_IDS = [
    "https://user\uff20contoso-cmk.vault.azure.net/keys/k",
    "https://contoso-cmk.vault.azure.net\uff0fkeys/k",
    "https://contoso-cmk.vault.azure.net\uff1a443/keys/k",
    "https://contoso-cmk.vault.azure.net:99999/keys/k",
    "https://contoso-cmk.vault.azure.net:abc/keys/k",
    "https://[::1/keys/k",
]


@pytest.mark.parametrize("text", MALFORMED_KEY_IDS)
def test_ids_urlsplit_cannot_read_are_refused_as_invalid_ids(text: str) -> None:
    with pytest.raises(InvalidId, match="key id"):
        parse_key_id(text)


@pytest.mark.parametrize("text", MALFORMED_KEY_IDS)
def test_container_group_parts_with_malformed_hosts_are_refused(text: str) -> None:
    base = text.rsplit("/keys/", 1)[0]
    with pytest.raises(InvalidId):
        key_from_parts(base, "k", VERSION)


# Plain st.text() almost never builds something urlsplit gets far enough to choke on: build
# URL-shaped text from the parts that matter (schemes, look-alike separators, ports, brackets).
_URL_PIECES = st.sampled_from(
    [
        "https://",
        "http://",
        "contoso-cmk.vault.azure.net",
        "v.managedhsm.azure.net",
        "\uff20",
        "\uff0f",
        "\uff1a",
        "\uff03",
        "\uff1f",
        "\u2100",
        "@",
        ":",
        ":443",
        ":99999",
        ":-1",
        ":abc",
        "[",
        "]",
        "[::1",
        "[::1]",
        "/keys/",
        "k",
        VERSION,
        "/",
        "?",
        "#",
        "%2f",
        "\u0130",
        "\u00b2",
    ]
)


URL_SHAPED = st.lists(st.one_of(_URL_PIECES, st.text(max_size=3)), min_size=1, max_size=10).map("".join)


@given(URL_SHAPED)
def test_fuzz_url_shaped_key_ids_only_raise_invalid_id(text: str) -> None:
    try:
        key = parse_key_id(text)
    except InvalidId:
        return
    assert parse_key_id(key.id) == key


def test_a_resource_ids_text_and_key_are_built_once_and_follow_a_replace() -> None:
    """A target's id is named many times a step (rows, records, lanes): its text is the same
    string object each time; a copy with another part names that part."""
    import dataclasses

    rid = parse_resource_id(
        "/subscriptions/00000000-0000-0000-0000-00000000000A/resourceGroups/RG/providers/"
        "microsoft.containerregistry/REGISTRIES/Reg1",
        (REGISTRY,),
    )
    text = "/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/RG/providers/Microsoft.ContainerRegistry/registries/Reg1"
    assert str(rid) == text and rid.key == text.lower()
    assert str(rid) is str(rid) and rid.key is rid.key
    other = dataclasses.replace(rid, name="Reg2")
    assert str(other) == text[: -len("Reg1")] + "Reg2" and other.key == str(other).lower()
    assert other != rid and hash(parse_resource_id(text, (REGISTRY,))) == hash(rid)
    assert repr(rid).startswith("ResourceId(subscription=") and "_text" not in repr(rid)
