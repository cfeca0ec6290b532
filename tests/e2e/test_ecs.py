"""ECS's control plane through boto3 and the aws CLI: clusters and task definitions
with ECS's validation (the Fargate size table, ports, memory). Tasks and services are
not built yet."""

import json
import uuid

import botocore.exceptions
import pytest


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


@pytest.fixture(scope="module")
def ecs(nimbus):
    return nimbus.client("ecs")


def web(family, **extra):
    return {
        "family": family,
        "containerDefinitions": [{
            "name": "web", "image": "127.0.0.1:4566/web:latest", "memory": 128,
            "portMappings": [{"containerPort": 8080, "hostPort": 0}],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": "/ecs/web", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "web"}},
        }],
        **extra,
    }


def test_clusters_are_created_described_listed_and_deleted(ecs):
    name = f"c-{uuid.uuid4().hex[:8]}"
    cluster = ecs.create_cluster(clusterName=name)["cluster"]
    assert cluster["clusterArn"] == f"arn:aws:ecs:us-east-1:000000000000:cluster/{name}"
    assert cluster["status"] == "ACTIVE"
    assert ecs.create_cluster(clusterName=name)["cluster"]["clusterArn"] == cluster["clusterArn"], "idempotent"
    assert cluster["clusterArn"] in ecs.list_clusters()["clusterArns"]
    described = ecs.describe_clusters(clusters=[name, "missing-cluster"])
    assert [c["clusterName"] for c in described["clusters"]] == [name]
    assert described["failures"][0]["reason"] == "MISSING"
    assert ecs.delete_cluster(cluster=cluster["clusterArn"])["cluster"]["status"] == "INACTIVE"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ecs.delete_cluster(cluster=name)
    assert error_code(excinfo) == "ClusterNotFoundException"


def test_task_definitions_get_revisions_and_families(ecs):
    family = f"web-{uuid.uuid4().hex[:8]}"
    first = ecs.register_task_definition(**web(family))["taskDefinition"]
    assert first["revision"] == 1 and first["status"] == "ACTIVE"
    assert first["containerDefinitions"][0]["essential"] is True
    second = ecs.register_task_definition(**web(family, cpu="256", memory="512"))["taskDefinition"]
    assert second["taskDefinitionArn"].endswith(f"task-definition/{family}:2")
    assert ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]["revision"] == 2
    ecs.deregister_task_definition(taskDefinition=f"{family}:2")
    assert ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]["revision"] == 1
    assert ecs.describe_task_definition(taskDefinition=f"{family}:2")["taskDefinition"]["status"] == "INACTIVE"
    active = ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]
    assert [arn.rsplit(":", 1)[1] for arn in active] == ["1"]
    assert ecs.list_task_definition_families(familyPrefix=family)["families"] == [family]


@pytest.mark.parametrize(("changes", "complaint"), [
    ({"requiresCompatibilities": ["FARGATE"], "networkMode": "awsvpc", "cpu": "256", "memory": "4096"},
     "No Fargate configuration exists for given values: 256 CPU, 4096 memory"),
    ({"requiresCompatibilities": ["FARGATE"], "cpu": "256", "memory": "512"}, "awsvpc"),
    ({"containerDefinitions": [{"name": "web", "image": "x"}]}, "'memory' or 'memoryReservation'"),
    ({"containerDefinitions": [{"name": "web", "image": "x", "memory": 64,
                                "portMappings": [{"containerPort": 99999}]}]}, "container port"),
    ({"networkMode": "host", "containerDefinitions": [{"name": "web", "image": "x", "memory": 64,
                                                       "portMappings": [{"containerPort": 80, "hostPort": 81}]}]},
     "must match"),
])
def test_bad_task_definitions_get_ecs_errors(ecs, changes, complaint):
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ecs.register_task_definition(**{**web(f"bad-{uuid.uuid4().hex[:6]}"), **changes})
    assert error_code(excinfo) == "ClientException"
    assert complaint in excinfo.value.response["Error"]["Message"]


def test_the_aws_cli_registers_and_lists(nimbus, tmp_path):
    family = f"cli-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "taskdef.json"
    path.write_text(json.dumps(web(family)))
    registered = nimbus.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{path}",
                            "--profile", "nimbus", check=True)
    assert json.loads(registered.stdout)["taskDefinition"]["family"] == family
    families = json.loads(nimbus.aws("ecs", "list-task-definition-families", "--family-prefix", family,
                                     "--profile", "nimbus", check=True).stdout)
    assert families["families"] == [family]
