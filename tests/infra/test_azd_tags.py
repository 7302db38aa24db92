"""The azd-env-name tag (issue 28 item 4), checked offline on the parsed templates.

azd's templates tag the resource group and the resources they create with
`azd-env-name: <environment name>` (azd finds an environment's resource group by it). main.bicep
deploys at resource-group scope into a group made beforehand, so it tags the group through its
`Microsoft.Resources/tags` extension (keeping the tags the group already has) and every resource
through the tags it passes down; `azd up` fills environmentName from AZURE_ENV_NAME.
"""

from __future__ import annotations

import json

from test_templates import INFRA, body, condition_of, main, parse, ref, variable


def test_azd_passes_its_environment_name():
    params = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert params["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    declared = main()["parameters"]["environmentName"]
    assert (declared["type"], declared["default"]) == ("string", ""), "plain az deployments add no tag"


def test_every_resource_gets_the_tag():
    union = variable(main(), "resourceTags")["function"]
    assert union["type"] == "union" and union["parameters"]["arg_1"] == "tags"
    when = union["parameters"]["arg_2"]["operator"]["operands"]
    assert when["true_value"] == {}, "no empty-valued tag when no environment is named"
    assert when["false_value"] == {"'azd-env-name'": "environmentName"}


def test_main_passes_the_tagged_set_to_every_resource_and_module():
    template = main()
    for name, resource in template["resources"].items():
        config = body(resource)
        if "location" in config:
            assert config.get("tags") == "resourceTags", f"resource {name} is not tagged"
    for name, declared in template["modules"].items():
        module = parse(INFRA / declared["detail"]["path"])
        if "tags" in module.get("parameters", {}):
            assert body(declared)["params"].get("tags") == "resourceTags", f"module {name} gets no tags"


def test_each_tracked_resource_of_a_module_carries_the_tags_it_is_given():
    for path in sorted((INFRA / "modules").glob("*.bicep")):
        for name, resource in parse(path).get("resources", {}).items():
            config = body(resource)
            if "location" not in config:
                continue  # role assignments, child resources: no tags
            tags = config.get("tags")
            merged = isinstance(tags, dict) and tags.get("function", {}).get("parameters", {}).get("arg_1")
            assert tags == "tags" or merged == "tags", f"{path.name}: {name} drops the tags"


def test_the_resource_group_is_tagged_without_losing_its_tags():
    resource = main()["resources"]["groupTags"]
    assert resource["type"] == "Microsoft.Resources/tags"
    assert ref(
        condition_of(resource)["operator"]["operands"]["bool_value"]["function"]["parameters"]["item_to_test"]
    ) == ("environmentName")
    config = body(resource)
    assert config["name"] == "default", "the tags of the deployment's resource group itself"
    merged = config["properties"]["tags"]["function"]
    assert merged["type"] == "union"
    existing, added = merged["parameters"]["arg_1"], merged["parameters"]["arg_2"]
    assert ref(existing) == "groupNow.tags"
    group_now = variable(main(), "groupNow")["function"]
    assert group_now["type"] == "union"
    assert group_now["parameters"]["arg_1"] == {"tags": {}}, "a group without tags"
    assert group_now["parameters"]["arg_2"]["function"]["type"] == "resource_group"
    assert added == {"'azd-env-name'": "environmentName"}
