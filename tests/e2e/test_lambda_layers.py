"""Layers: published, versioned, listed, and their content seen by functions."""

import urllib.request

import botocore.exceptions
import pytest

from conftest import create_function, invoke, zip_directory, zip_function


def layer_zip(tmp_path, word):
    root = tmp_path / word
    (root / "python").mkdir(parents=True, exist_ok=True)
    (root / "python" / "greeting.py").write_text(f"WORD = {word!r}\n")
    return zip_directory(root)


def test_layers_are_versioned_and_reach_functions(lambda_client, unique_name, tmp_path):
    layer = unique_name + "-layer"
    first = lambda_client.publish_layer_version(
        LayerName=layer, Content={"ZipFile": layer_zip(tmp_path, "one")}, CompatibleRuntimes=["python3.12"],
        Description="first",
    )
    assert first["Version"] == 1
    assert first["LayerVersionArn"] == f"arn:aws:lambda:us-east-1:000000000000:layer:{layer}:1"
    with urllib.request.urlopen(first["Content"]["Location"], timeout=10) as response:
        assert response.read() == layer_zip(tmp_path, "one")
    second = lambda_client.publish_layer_version(LayerName=layer, Content={"ZipFile": layer_zip(tmp_path, "two")})
    assert second["Version"] == 2

    versions = lambda_client.list_layer_versions(LayerName=layer)["LayerVersions"]
    assert [v["Version"] for v in versions] == [2, 1]
    listed = {entry["LayerName"]: entry for entry in lambda_client.list_layers()["Layers"]}
    assert listed[layer]["LatestMatchingVersion"]["Version"] == 2
    assert lambda_client.get_layer_version(LayerName=layer, VersionNumber=1)["Description"] == "first"

    create_function(lambda_client, unique_name, zip_function("py_layer_user"), Layers=[first["LayerVersionArn"]])
    config = lambda_client.get_function_configuration(FunctionName=unique_name)
    assert config["Layers"] == [{"Arn": first["LayerVersionArn"], "CodeSize": first["Content"]["CodeSize"]}]
    assert invoke(lambda_client, unique_name)[1] == {"word": "one"}

    lambda_client.update_function_configuration(FunctionName=unique_name, Layers=[second["LayerVersionArn"]])
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=unique_name, WaiterConfig={"Delay": 0.2})
    assert invoke(lambda_client, unique_name)[1] == {"word": "two"}

    lambda_client.delete_layer_version(LayerName=layer, VersionNumber=1)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        lambda_client.get_layer_version(LayerName=layer, VersionNumber=1)
    assert excinfo.value.response["Error"]["Code"] == "ResourceNotFoundException"
    third = lambda_client.publish_layer_version(LayerName=layer, Content={"ZipFile": layer_zip(tmp_path, "three")})
    assert third["Version"] == 3, "numbers are not reused after a delete"


def test_a_missing_layer_is_refused(lambda_client, unique_name):
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        create_function(
            lambda_client, unique_name, zip_function("py_layer_user"),
            Layers=["arn:aws:lambda:us-east-1:000000000000:layer:nothing:9"],
        )
    assert excinfo.value.response["Error"]["Code"] == "InvalidParameterValueException"
