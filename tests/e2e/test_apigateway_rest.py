"""API Gateway REST APIs (v1) as SAM and the Serverless Framework make them, through
boto3's `apigateway` client, Debian's aws CLI v2 and plain HTTP: a root and a greedy
`{proxy+}` resource with ANY methods proxying to a function with the v1 proxy event,
served from the stage's deployment (a change waits for the next deployment); a mock
OPTIONS method answering CORS preflights; API keys and usage plans guarding a method;
stage variables and method throttling set by patch operations; the errors AWS gives."""

import json
import uuid

import pytest
import requests

from conftest import REGION
from test_apigateway import aws_cli, function

ACCOUNT = "000000000000"
# Answers with the event it got, shaped as a proxy response with a repeated header.
ECHO = b"""import json

def handler(event, context):
    return {"statusCode": 201, "headers": {"x-echo": "yes"},
            "multiValueHeaders": {"set-cookie": ["a=1", "b=2"]}, "body": json.dumps(event)}
"""


@pytest.fixture
def apigw(nimbus):
    return nimbus.client("apigateway")


def lambda_uri(arn):
    return f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{arn}/invocations"


def proxy_api(apigw, lambda_client, name_prefix="sam"):
    """A REST API as SAM's implicit API makes it: ANY on `/` and on `/{proxy+}`, each a
    Lambda proxy to one function, deployed to the `Prod` stage."""
    name, arn = function(lambda_client, ECHO)
    api = apigw.create_rest_api(name=f"{name_prefix}-{uuid.uuid4().hex[:6]}")
    api_id, root = api["id"], api["rootResourceId"]
    proxy = apigw.create_resource(restApiId=api_id, parentId=root, pathPart="{proxy+}")
    assert proxy["path"] == "/{proxy+}"
    for resource in (root, proxy["id"]):
        apigw.put_method(restApiId=api_id, resourceId=resource, httpMethod="ANY", authorizationType="NONE")
        apigw.put_integration(restApiId=api_id, resourceId=resource, httpMethod="ANY", type="AWS_PROXY",
                              integrationHttpMethod="POST", uri=lambda_uri(arn))
    lambda_client.add_permission(FunctionName=name, StatementId="apigw", Action="lambda:InvokeFunction",
                                 Principal="apigateway.amazonaws.com",
                                 SourceArn=f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/*/*/*")
    return api_id, root, proxy["id"], arn


def test_a_sam_style_rest_api_proxies_to_a_function(nimbus, apigw, lambda_client):
    api_id, root, proxy, arn = proxy_api(apigw, lambda_client)
    deployment = apigw.create_deployment(restApiId=api_id, stageName="Prod", description="first")
    assert apigw.get_stage(restApiId=api_id, stageName="Prod")["deploymentId"] == deployment["id"]
    base = f"{nimbus.endpoint}/_nimbus/execute-api/{api_id}/Prod"

    answered = requests.get(f"{base}/hello/world?x=1&x=2&y=3", headers={"x-custom": "c"}, timeout=30)
    assert answered.status_code == 201, answered.text
    assert answered.headers["x-echo"] == "yes" and answered.headers["x-amzn-requestid"]
    assert answered.raw.headers.getlist("set-cookie") == ["a=1", "b=2"]
    event = answered.json()
    assert "version" not in event
    assert (event["resource"], event["path"], event["httpMethod"]) == ("/{proxy+}", "/hello/world", "GET")
    assert event["pathParameters"] == {"proxy": "hello/world"}
    assert event["queryStringParameters"] == {"x": "2", "y": "3"}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "y": ["3"]}
    assert event["headers"]["x-custom"] == "c" and event["multiValueHeaders"]["x-custom"] == ["c"]
    assert event["body"] is None and event["isBase64Encoded"] is False and event["stageVariables"] is None
    context = event["requestContext"]
    assert (context["stage"], context["resourcePath"], context["resourceId"], context["apiId"]) == (
        "Prod", "/{proxy+}", proxy, api_id)
    assert (context["path"], context["accountId"]) == ("/Prod/hello/world", ACCOUNT)
    assert context["requestId"] == answered.headers["x-amzn-requestid"]

    posted = requests.post(f"{base}/", data=b"\x00\xff", timeout=30).json()
    assert (posted["resource"], posted["path"], posted["pathParameters"]) == ("/", "/", None)
    assert posted["isBase64Encoded"] is True

    # A stage serves its deployment: a new method waits for the next one.
    items = apigw.create_resource(restApiId=api_id, parentId=root, pathPart="items")["id"]
    apigw.put_method(restApiId=api_id, resourceId=items, httpMethod="GET", authorizationType="NONE")
    apigw.put_integration(restApiId=api_id, resourceId=items, httpMethod="GET", type="MOCK",
                          requestTemplates={"application/json": '{"statusCode": 200}'})
    apigw.put_integration_response(restApiId=api_id, resourceId=items, httpMethod="GET", statusCode="200",
                                   responseTemplates={"application/json": '{"mocked": true}'})
    assert requests.get(f"{base}/items", timeout=30).json()["resource"] == "/{proxy+}"
    apigw.create_deployment(restApiId=api_id, stageName="Prod")
    assert requests.get(f"{base}/items", timeout=30).json() == {"mocked": True}
    assert requests.post(f"{base}/items", timeout=30).json()["resource"] == "/{proxy+}"

    # Not a stage: refused as AWS refuses it.
    assert requests.get(f"{nimbus.endpoint}/_nimbus/execute-api/{api_id}/Staging/x", timeout=30).status_code == 403
    summary = apigw.get_deployment(restApiId=api_id, deploymentId=deployment["id"], embed=["apisummary"])
    assert summary["apiSummary"]["/{proxy+}"]["ANY"] == {"authorizationType": "NONE", "apiKeyRequired": False}
    assert {r["path"] for r in apigw.get_resources(restApiId=api_id)["items"]} == {"/", "/{proxy+}", "/items"}
    apigw.delete_rest_api(restApiId=api_id)
    assert requests.get(f"{base}/hello", timeout=30).status_code == 404


def test_a_function_without_the_permission_is_not_invoked(nimbus, apigw, lambda_client):
    name, arn = function(lambda_client, ECHO)
    api = apigw.create_rest_api(name=f"unallowed-{uuid.uuid4().hex[:6]}")
    apigw.put_method(restApiId=api["id"], resourceId=api["rootResourceId"], httpMethod="GET",
                     authorizationType="NONE")
    apigw.put_integration(restApiId=api["id"], resourceId=api["rootResourceId"], httpMethod="GET",
                          type="AWS_PROXY", integrationHttpMethod="POST", uri=lambda_uri(arn))
    apigw.create_deployment(restApiId=api["id"], stageName="dev")
    url = f"{nimbus.endpoint}/_nimbus/execute-api/{api['id']}/dev/"
    refused = requests.get(url, timeout=30)
    assert refused.status_code == 500 and refused.json() == {"message": "Internal server error"}
    # Only the method's ARN is allowed; other methods are unknown.
    lambda_client.add_permission(FunctionName=name, StatementId="apigw", Action="lambda:InvokeFunction",
                                 Principal="apigateway.amazonaws.com",
                                 SourceArn=f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api['id']}/*/GET/")
    assert requests.get(url, timeout=30).status_code == 201
    missing = requests.post(url, timeout=30)
    assert missing.status_code == 403 and missing.json() == {"message": "Missing Authentication Token"}


def test_api_keys_and_usage_plans_guard_a_method(nimbus, apigw, lambda_client):
    api_id, root, proxy, _ = proxy_api(apigw, lambda_client, "keyed")
    apigw.update_method(restApiId=api_id, resourceId=proxy, httpMethod="ANY",
                        patchOperations=[{"op": "replace", "path": "/apiKeyRequired", "value": "true"}])
    apigw.create_deployment(restApiId=api_id, stageName="v1")
    url = f"{nimbus.endpoint}/_nimbus/execute-api/{api_id}/v1/things"
    assert requests.get(url, timeout=30).status_code == 403

    key = apigw.create_api_key(name=f"key-{uuid.uuid4().hex[:6]}", enabled=True)
    assert len(key["value"]) >= 20 and "value" not in apigw.get_api_key(apiKey=key["id"])
    assert apigw.get_api_key(apiKey=key["id"], includeValue=True)["value"] == key["value"]
    headers = {"x-api-key": key["value"]}
    # A key in no plan for the stage is refused.
    assert requests.get(url, headers=headers, timeout=30).status_code == 403
    with pytest.raises(apigw.exceptions.BadRequestException):
        apigw.create_usage_plan(name="nowhere", apiStages=[{"apiId": api_id, "stage": "nope"}])
    plan = apigw.create_usage_plan(name=f"plan-{uuid.uuid4().hex[:6]}", apiStages=[{"apiId": api_id, "stage": "v1"}],
                                   throttle={"rateLimit": 0.001, "burstLimit": 2}, quota={"limit": 1000, "period": "DAY"})
    with pytest.raises(apigw.exceptions.BadRequestException):
        apigw.update_usage_plan(usagePlanId=plan["id"],
                                patchOperations=[{"op": "add", "path": "/apiStages", "value": f"{api_id}:nope"}])
    assert apigw.get_usage_plan(usagePlanId=plan["id"])["apiStages"] == [{"apiId": api_id, "stage": "v1"}]
    apigw.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    assert [k["id"] for k in apigw.get_usage_plan_keys(usagePlanId=plan["id"])["items"]] == [key["id"]]
    assert [p["id"] for p in apigw.get_usage_plans(keyId=key["id"])["items"]] == [plan["id"]]
    answered = requests.get(url, headers=headers, timeout=30)
    assert answered.status_code == 201, answered.text
    identity = answered.json()["requestContext"]["identity"]
    assert (identity["apiKey"], identity["apiKeyId"]) == (key["value"], key["id"])
    # Unguarded methods need no key.
    assert requests.get(f"{nimbus.endpoint}/_nimbus/execute-api/{api_id}/v1/", timeout=30).status_code == 201
    # The plan's burst of two is spent.
    assert requests.get(url, headers=headers, timeout=30).status_code == 201
    assert requests.get(url, headers=headers, timeout=30).status_code == 429

    apigw.update_api_key(apiKey=key["id"], patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}])
    assert requests.get(url, headers=headers, timeout=30).status_code == 403
    apigw.delete_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"])
    apigw.delete_usage_plan(usagePlanId=plan["id"])
    apigw.delete_api_key(apiKey=key["id"])
    with pytest.raises(apigw.exceptions.NotFoundException):
        apigw.get_api_key(apiKey=key["id"])


def test_mock_cors_stage_settings_and_errors(nimbus, apigw, lambda_client):
    api_id, root, proxy, _ = proxy_api(apigw, lambda_client, "cors")
    # The OPTIONS method SAM's `Cors` setting makes: a mock with static headers.
    apigw.put_method(restApiId=api_id, resourceId=proxy, httpMethod="OPTIONS", authorizationType="NONE")
    apigw.put_method_response(restApiId=api_id, resourceId=proxy, httpMethod="OPTIONS", statusCode="200",
                              responseParameters={"method.response.header.Access-Control-Allow-Origin": False})
    apigw.put_integration(restApiId=api_id, resourceId=proxy, httpMethod="OPTIONS", type="MOCK",
                          requestTemplates={"application/json": '{"statusCode": 200}'})
    apigw.put_integration_response(restApiId=api_id, resourceId=proxy, httpMethod="OPTIONS", statusCode="200",
                                   responseParameters={
                                       "method.response.header.Access-Control-Allow-Origin": "'https://app.example'",
                                       "method.response.header.Access-Control-Allow-Methods": "'GET,POST'"},
                                   responseTemplates={"application/json": ""})
    deployment = apigw.create_deployment(restApiId=api_id, stageName="live", variables={"color": "blue"})
    base = f"{nimbus.endpoint}/_nimbus/execute-api/{api_id}/live"
    preflight = requests.options(f"{base}/a", headers={"Origin": "https://app.example",
                                                       "Access-Control-Request-Method": "POST"}, timeout=30)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert preflight.headers["access-control-allow-methods"] == "GET,POST"
    assert requests.get(f"{base}/a", timeout=30).json()["stageVariables"] == {"color": "blue"}

    stage = apigw.update_stage(restApiId=api_id, stageName="live", patchOperations=[
        {"op": "replace", "path": "/variables/color", "value": "green"},
        {"op": "replace", "path": "/~1{proxy+}/ANY/throttling/rateLimit", "value": "0.001"},
        {"op": "replace", "path": "/~1{proxy+}/ANY/throttling/burstLimit", "value": "1"},
    ])
    assert stage["variables"] == {"color": "green"}
    assert stage["methodSettings"]["{proxy+}/ANY"]["throttlingBurstLimit"] == 1
    assert requests.get(f"{base}/a", timeout=30).json()["stageVariables"] == {"color": "green"}
    assert requests.get(f"{base}/a", timeout=30).status_code == 429
    # The root method has settings of its own: none.
    assert requests.get(f"{base}/", timeout=30).status_code == 201

    with pytest.raises(apigw.exceptions.ConflictException):
        apigw.put_method(restApiId=api_id, resourceId=proxy, httpMethod="ANY", authorizationType="NONE")
    with pytest.raises(apigw.exceptions.ConflictException):
        apigw.create_resource(restApiId=api_id, parentId=root, pathPart="{proxy+}")
    with pytest.raises(apigw.exceptions.BadRequestException):
        apigw.create_resource(restApiId=api_id, parentId=proxy, pathPart="deeper")
    with pytest.raises(apigw.exceptions.BadRequestException):
        apigw.create_resource(restApiId=api_id, parentId=root, pathPart="a/b")
    with pytest.raises(apigw.exceptions.BadRequestException) as refused:
        apigw.put_integration(restApiId=api_id, resourceId=root, httpMethod="ANY", type="AWS",
                              integrationHttpMethod="POST", uri="arn:aws:apigateway:us-east-1:s3:path/b")
    assert "AWS_PROXY" in refused.value.response["Error"]["Message"]
    with pytest.raises(apigw.exceptions.BadRequestException):
        apigw.delete_deployment(restApiId=api_id, deploymentId=deployment["id"])
    with pytest.raises(apigw.exceptions.BadRequestException):
        apigw.update_stage(restApiId=api_id, stageName="live",
                           patchOperations=[{"op": "replace", "path": "/createdDate", "value": "0"}])
    with pytest.raises(apigw.exceptions.NotFoundException):
        apigw.get_rest_api(restApiId="nosuchapi0")
    with pytest.raises(apigw.exceptions.NotFoundException):
        apigw.get_method(restApiId=api_id, resourceId=root, httpMethod="PATCH")
    empty = apigw.create_rest_api(name="empty")["id"]
    with pytest.raises(apigw.exceptions.BadRequestException) as refused:
        apigw.create_deployment(restApiId=empty, stageName="x")
    assert "doesn't contain any methods" in refused.value.response["Error"]["Message"]

    apigw.delete_stage(restApiId=api_id, stageName="live")
    apigw.delete_deployment(restApiId=api_id, deploymentId=deployment["id"])
    assert apigw.get_deployments(restApiId=api_id)["items"] == []
    for gone in (api_id, empty):
        apigw.delete_rest_api(restApiId=gone)


def test_the_aws_cli_v2_manages_rest_apis(nimbus):
    aws = aws_cli(nimbus, "apigateway")
    name = f"cli-{uuid.uuid4().hex[:6]}"
    api = aws("create-rest-api", "--name", name)
    assert name in [a["name"] for a in aws("get-rest-apis")["items"]]
    [root] = aws("get-resources", "--rest-api-id", api["id"])["items"]
    assert root["path"] == "/"
    child = aws("create-resource", "--rest-api-id", api["id"], "--parent-id", root["id"], "--path-part", "items")
    assert child["path"] == "/items"
    aws("delete-rest-api", "--rest-api-id", api["id"])


def test_an_openapi_definition_is_imported_and_put(nimbus, apigw, lambda_client):
    """The Swagger definition SAM writes for an implicit API: a Lambda proxy method
    and one guarded by an API key, imported, merged into and overwritten."""
    name, arn = function(lambda_client, ECHO)
    integration = {"type": "aws_proxy", "httpMethod": "POST", "uri": lambda_uri(arn)}
    definition = {
        "swagger": "2.0",
        "info": {"version": "1.0", "title": f"sam-app-{uuid.uuid4().hex[:6]}"},
        "paths": {
            "/hello": {"get": {"x-amazon-apigateway-integration": integration, "responses": {}}},
            "/items/{id}": {"x-amazon-apigateway-any-method": {
                "x-amazon-apigateway-integration": integration, "security": [{"api_key": []}], "responses": {}}},
        },
        "securityDefinitions": {"api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"}},
    }
    api = apigw.import_rest_api(body=json.dumps(definition).encode())
    api_id = api["id"]
    assert api["name"] == definition["info"]["title"]
    paths = {r["path"]: r for r in apigw.get_resources(restApiId=api_id, embed=["methods"])["items"]}
    assert set(paths) == {"/", "/hello", "/items", "/items/{id}"}
    assert paths["/items/{id}"]["resourceMethods"]["ANY"]["apiKeyRequired"] is True
    assert paths["/hello"]["resourceMethods"]["GET"]["methodIntegration"]["type"] == "AWS_PROXY"
    lambda_client.add_permission(FunctionName=name, StatementId="apigw", Action="lambda:InvokeFunction",
                                 Principal="apigateway.amazonaws.com",
                                 SourceArn=f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/*")
    apigw.create_deployment(restApiId=api_id, stageName="Prod")
    base = f"{nimbus.endpoint}/_nimbus/execute-api/{api_id}/Prod"
    assert requests.get(f"{base}/hello", timeout=30).json()["resource"] == "/hello"
    assert requests.get(f"{base}/items/7", timeout=30).status_code == 403

    # Merged: a mock beside what is there.
    extra = {"swagger": "2.0", "info": {"title": "extra"}, "paths": {"/ping": {"get": {
        "x-amazon-apigateway-integration": {"type": "mock", "requestTemplates": {"application/json": '{"statusCode": 200}'},
                                            "responses": {"default": {"statusCode": "200",
                                                                      "responseTemplates": {"application/json": '"pong"'}}}}}}}}
    apigw.put_rest_api(restApiId=api_id, mode="merge", body=json.dumps(extra).encode())
    assert {r["path"] for r in apigw.get_resources(restApiId=api_id)["items"]} >= {"/hello", "/ping"}
    # Overwritten: only what the definition declares, under the same root.
    overwritten = apigw.put_rest_api(restApiId=api_id, mode="overwrite", body=json.dumps(extra).encode())
    assert overwritten["name"] == "extra" and overwritten["rootResourceId"] == api["rootResourceId"]
    assert {r["path"] for r in apigw.get_resources(restApiId=api_id)["items"]} == {"/", "/ping"}
    apigw.create_deployment(restApiId=api_id, stageName="Prod")
    assert requests.get(f"{base}/ping", timeout=30).json() == "pong"

    with pytest.raises(apigw.exceptions.BadRequestException) as refused:
        apigw.import_rest_api(body=b"openapi: 3.0.0\ninfo:\n  title: yaml\n")
    assert "JSON" in refused.value.response["Error"]["Message"]
    with pytest.raises(apigw.exceptions.BadRequestException):
        apigw.import_rest_api(body=json.dumps({"swagger": "2.0", "info": {"title": "t"}, "paths": {
            "/x": {"get": {"x-amazon-apigateway-integration": {"type": "aws", "uri": "arn:aws:apigateway:x"}}}}}).encode())
    apigw.delete_rest_api(restApiId=api_id)
