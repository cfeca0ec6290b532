"""API Gateway HTTP APIs through boto3, Debian's aws CLI v2 and plain HTTP: a
quick-created API in front of a function, which answers only once the function's
policy lets API Gateway in; routes with path parameters and a greedy proxy to
functions with payload formats 2.0 and 1.0 on a named stage; the host form of the
invoke URL; CORS; a JWT authorizer checking tokens against an issuer's JWKS; a
stage's access log lines in CloudWatch Logs; an HTTP_PROXY route in front of a
service; an AWS_IAM route taking only signed callers allowed execute-api:Invoke; a
Lambda authorizer deciding with a simple response; an ECS service behind a route;
stage throttling."""

import base64
import http.server
import io
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
import zipfile

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest
import requests

from conftest import REGION, create_function, eventually, host_address
from test_ecs import web_image  # noqa: F401 (a fixture)

# Answers with the event it got, shaped as an API Gateway proxy response.
ECHO = b"""import json

def handler(event, context):
    return {"statusCode": 201, "headers": {"x-echo": "yes"}, "body": json.dumps(event)}
"""
# Answers with a bare object, which payload format 2.0 turns into a 200 JSON body.
BARE = b"""def handler(event, context):
    return {"routeKey": event["routeKey"], "path": event["rawPath"], "params": event.get("pathParameters"),
            "query": event.get("queryStringParameters"), "stage": event["requestContext"]["stage"]}
"""


def zipped(source):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        entry = zipfile.ZipInfo("app.py")
        entry.external_attr = 0o644 << 16
        archive.writestr(entry, source)
    return buffer.getvalue()


@pytest.fixture
def apigw(nimbus):
    return nimbus.client("apigatewayv2")


def function(lambda_client, source):
    name = f"api-{uuid.uuid4().hex[:8]}"
    create_function(lambda_client, name, zipped(source))
    return name, lambda_client.get_function(FunctionName=name)["Configuration"]["FunctionArn"]


def allow(lambda_client, name, api_id):
    lambda_client.add_permission(FunctionName=name, StatementId="apigw", Action="lambda:InvokeFunction",
                                 Principal="apigateway.amazonaws.com",
                                 SourceArn=f"arn:aws:execute-api:{REGION}:000000000000:{api_id}/*")


def test_a_quick_created_api_invokes_its_function_once_allowed(nimbus, apigw, lambda_client):
    name, arn = function(lambda_client, BARE)
    api = apigw.create_api(Name=f"quick-{uuid.uuid4().hex[:6]}", ProtocolType="HTTP", Target=arn)
    assert api["ApiEndpoint"] == f"{nimbus.endpoint}/_nimbus/execute-api/{api['ApiId']}"
    [route] = apigw.get_routes(ApiId=api["ApiId"])["Items"]
    assert route["RouteKey"] == "$default"
    assert [s["StageName"] for s in apigw.get_stages(ApiId=api["ApiId"])["Items"]] == ["$default"]

    url = f"{api['ApiEndpoint']}/any/path?color=blue"
    refused = requests.get(url, timeout=30)
    assert refused.status_code == 500 and refused.json() == {"message": "Internal Server Error"}
    allow(lambda_client, name, api["ApiId"])
    answered = requests.get(url, timeout=30)
    assert answered.status_code == 200, answered.text
    assert answered.json() == {"routeKey": "$default", "path": "/any/path", "params": None,
                               "query": {"color": "blue"}, "stage": "$default"}
    assert answered.headers["apigw-requestid"]

    # The host form needs no path prefix.
    port = nimbus.endpoint.rsplit(":", 1)[1]
    by_host = requests.get(f"http://127.0.0.1:{port}/by/host",
                           headers={"Host": f"{api['ApiId']}.execute-api.{REGION}.localhost:{port}"}, timeout=30)
    assert by_host.status_code == 200 and by_host.json()["path"] == "/by/host"


def test_routes_reach_functions_by_path_with_either_payload_format(nimbus, apigw, lambda_client):
    bare_name, bare_arn = function(lambda_client, BARE)
    echo_name, echo_arn = function(lambda_client, ECHO)
    api_id = apigw.create_api(Name=f"routes-{uuid.uuid4().hex[:6]}", ProtocolType="HTTP")["ApiId"]
    v2 = apigw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=bare_arn,
                                  PayloadFormatVersion="2.0")["IntegrationId"]
    v1 = apigw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", PayloadFormatVersion="1.0",
                                  IntegrationUri=f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/"
                                                 f"{echo_arn}/invocations")["IntegrationId"]
    for key, integration in (("GET /items/{id}", v2), ("POST /items", v1), ("ANY /{proxy+}", v2)):
        apigw.create_route(ApiId=api_id, RouteKey=key, Target=f"integrations/{integration}")
    with pytest.raises(apigw.exceptions.ConflictException):
        apigw.create_route(ApiId=api_id, RouteKey="POST /items", Target=f"integrations/{v1}")
    with pytest.raises(apigw.exceptions.BadRequestException):
        apigw.create_route(ApiId=api_id, RouteKey="GET /x", Target="integrations/nope")
    apigw.create_stage(ApiId=api_id, StageName="prod", AutoDeploy=True)
    allow(lambda_client, bare_name, api_id)
    allow(lambda_client, echo_name, api_id)
    base = f"{nimbus.endpoint}/_nimbus/execute-api/{api_id}/prod"

    item = requests.get(f"{base}/items/42?expand=1", timeout=30).json()
    assert item == {"routeKey": "GET /items/{id}", "path": "/items/42", "params": {"id": "42"},
                    "query": {"expand": "1"}, "stage": "prod"}
    proxied = requests.delete(f"{base}/a/b/c", timeout=30).json()
    assert (proxied["routeKey"], proxied["params"]) == ("ANY /{proxy+}", {"proxy": "a/b/c"})

    posted = requests.post(f"{base}/items", json={"name": "thing"}, timeout=30)
    assert (posted.status_code, posted.headers["x-echo"]) == (201, "yes")
    event = posted.json()
    assert (event["version"], event["httpMethod"], event["resource"], event["path"]) == ("1.0", "POST", "/items", "/items")
    assert json.loads(event["body"]) == {"name": "thing"} and event["requestContext"]["stage"] == "prod"

    assert requests.get(f"{nimbus.endpoint}/_nimbus/execute-api/{api_id}/staging/items/1", timeout=30).status_code == 404
    deployment = apigw.create_deployment(ApiId=api_id, StageName="prod", Description="first")
    assert apigw.get_stage(ApiId=api_id, StageName="prod")["DeploymentId"] == deployment["DeploymentId"]
    assert [d["Description"] for d in apigw.get_deployments(ApiId=api_id)["Items"]] == ["first"]
    apigw.delete_api(ApiId=api_id)
    assert requests.get(f"{base}/items/42", timeout=30).status_code == 404


def aws_cli(nimbus, service):
    """Debian's aws CLI v2 for `service`, as the root user: a call's JSON output."""
    if not shutil.which("/usr/bin/aws"):
        pytest.skip("the aws CLI v2 is installed by the test command")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(nimbus.credentials_file), AWS_CONFIG_FILE=os.devnull,
               AWS_MAX_ATTEMPTS="1", AWS_PROFILE="nimbus")

    def aws(*args):
        done = subprocess.run(["/usr/bin/aws", "--endpoint-url", nimbus.endpoint, "--region", REGION,
                               "--output", "json", service, *args], capture_output=True, text=True,
                              env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else None
    return aws


def test_the_aws_cli_v2_manages_http_apis(nimbus):
    aws = aws_cli(nimbus, "apigatewayv2")
    name = f"cli-{uuid.uuid4().hex[:6]}"
    api_id = aws("create-api", "--name", name, "--protocol-type", "HTTP")["ApiId"]
    assert name in [api["Name"] for api in aws("get-apis")["Items"]]
    aws("delete-api", "--api-id", api_id)


def test_cors_preflights_are_answered_and_responses_carry_the_headers(nimbus, apigw, lambda_client):
    name, arn = function(lambda_client, BARE)
    api = apigw.create_api(Name=f"cors-{uuid.uuid4().hex[:6]}", ProtocolType="HTTP", Target=arn, CorsConfiguration={
        "AllowOrigins": ["https://app.example"], "AllowMethods": ["GET", "POST"], "AllowHeaders": ["content-type"],
        "ExposeHeaders": ["x-total"], "MaxAge": 300})
    assert api["CorsConfiguration"]["AllowOrigins"] == ["https://app.example"]
    allow(lambda_client, name, api["ApiId"])
    url = f"{api['ApiEndpoint']}/items"
    preflight = requests.options(url, timeout=30, headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert preflight.headers["access-control-allow-methods"] == "GET,POST"
    assert preflight.headers["access-control-max-age"] == "300"
    answered = requests.get(url, headers={"Origin": "https://app.example"}, timeout=30)
    assert answered.status_code == 200
    assert answered.headers["access-control-allow-origin"] == "https://app.example"
    assert answered.headers["access-control-expose-headers"] == "x-total"
    stranger = requests.get(url, headers={"Origin": "https://evil.example"}, timeout=30)
    assert "access-control-allow-origin" not in stranger.headers


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Issuer:
    """An OpenID issuer on this host: an RSA key made with openssl, its discovery
    document and JWKS served over HTTP, and tokens it signs."""

    def __init__(self, directory):
        self.key = directory / "issuer.pem"
        subprocess.run(["openssl", "genrsa", "-out", str(self.key), "2048"], check=True, capture_output=True)
        modulus = subprocess.run(["openssl", "rsa", "-in", str(self.key), "-noout", "-modulus"], check=True,
                                 capture_output=True, text=True).stdout.strip().split("=", 1)[1]
        jwks = {"keys": [{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
                          "n": b64url(bytes.fromhex(modulus)), "e": "AQAB"}]}
        documents = {}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = json.dumps(documents.get(self.path, {})).encode()
                self.send_response(200 if self.path in documents else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((host_address(), 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://{host_address()}:{self.server.server_address[1]}"
        documents["/.well-known/openid-configuration"] = {"issuer": self.url, "jwks_uri": f"{self.url}/jwks"}
        documents["/jwks"] = jwks

    def token(self, **claims):
        header = b64url(json.dumps({"alg": "RS256", "kid": "k1", "typ": "JWT"}).encode())
        body = b64url(json.dumps({"iss": self.url, "aud": "orders-api", "exp": int(time.time()) + 300,
                                  "sub": "user-1", **claims}).encode())
        signed = f"{header}.{body}".encode()
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=signed,
                                   check=True, capture_output=True).stdout
        return f"{header}.{body}.{b64url(signature)}"


def test_a_jwt_authorizer_admits_only_valid_tokens_with_the_route_scopes(nimbus, apigw, lambda_client, tmp_path):
    issuer = Issuer(tmp_path)
    name, arn = function(lambda_client, ECHO)
    api_id = apigw.create_api(Name=f"jwt-{uuid.uuid4().hex[:6]}", ProtocolType="HTTP")["ApiId"]
    integration = apigw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=arn,
                                           PayloadFormatVersion="2.0")["IntegrationId"]
    authorizer = apigw.create_authorizer(ApiId=api_id, AuthorizerType="JWT", Name="issuer",
                                         IdentitySource=["$request.header.Authorization"],
                                         JwtConfiguration={"Issuer": issuer.url, "Audience": ["orders-api"]})
    for key, scopes in (("GET /orders", ["orders:read"]), ("POST /orders", ["orders:write"])):
        apigw.create_route(ApiId=api_id, RouteKey=key, Target=f"integrations/{integration}",
                           AuthorizationType="JWT", AuthorizerId=authorizer["AuthorizerId"],
                           AuthorizationScopes=scopes)
    apigw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
    allow(lambda_client, name, api_id)
    url = f"{nimbus.endpoint}/_nimbus/execute-api/{api_id}/orders"

    def get(token=None, method="GET"):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.request(method, url, headers=headers, timeout=30)

    assert get().status_code == 401
    good = issuer.token(scope="orders:read profile")
    tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    assert get(tampered).status_code == 401
    assert get(issuer.token(aud="someone-else", scope="orders:read")).status_code == 401
    assert get(issuer.token(exp=int(time.time()) - 10, scope="orders:read")).status_code == 401
    assert get(good, method="POST").status_code == 403, "the token lacks orders:write"
    answered = get(good)
    assert answered.status_code == 201, answered.text
    context = answered.json()["requestContext"]["authorizer"]["jwt"]
    assert context["claims"]["sub"] == "user-1" and context["claims"]["iss"] == issuer.url
    assert context["scopes"] == ["orders:read", "profile"]


def test_a_stage_writes_access_log_lines_in_its_format(nimbus, apigw, lambda_client):
    logs = nimbus.client("logs")
    name, arn = function(lambda_client, BARE)
    api = apigw.create_api(Name=f"logged-{uuid.uuid4().hex[:6]}", ProtocolType="HTTP", Target=arn)
    allow(lambda_client, name, api["ApiId"])
    group = f"/apigw/{api['ApiId']}"
    logs.create_log_group(logGroupName=group)
    apigw.update_stage(ApiId=api["ApiId"], StageName="$default", AccessLogSettings={
        "DestinationArn": f"arn:aws:logs:{REGION}:000000000000:log-group:{group}",
        "Format": '{"requestId":"$context.requestId","method":"$context.httpMethod","path":"$context.path",'
                  '"route":"$context.routeKey","status":"$context.status"}'})
    answered = requests.get(f"{api['ApiEndpoint']}/logged?x=1", timeout=30)
    assert answered.status_code == 200

    def lines():
        return [json.loads(e["message"]) for e in logs.filter_log_events(logGroupName=group).get("events", [])]
    assert eventually(lambda: lines(), timeout=20)
    [line] = lines()
    assert line == {"requestId": answered.headers["apigw-requestid"], "method": "GET", "path": "/logged",
                    "route": "$default", "status": "200"}


def test_an_http_proxy_route_passes_requests_to_a_url(nimbus, apigw):
    """A container's or any service's front: the request goes on to the integration's
    URL with its path, query, headers and body, and the answer comes back as it was."""
    seen = []

    class Backend(http.server.BaseHTTPRequestHandler):
        def answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            seen.append((self.command, self.path, self.headers.get("x-trace"), self.rfile.read(length)))
            self.send_response(202)
            self.send_header("x-backend", "yes")
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"from the backend")

        do_GET = do_PUT = answer

        def log_message(self, *args):
            pass

    backend = http.server.ThreadingHTTPServer((host_address(), 0), Backend)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    base = f"http://{host_address()}:{backend.server_address[1]}"
    try:
        api_id = apigw.create_api(Name=f"proxy-{uuid.uuid4().hex[:6]}", ProtocolType="HTTP")["ApiId"]
        mapped = apigw.create_integration(ApiId=api_id, IntegrationType="HTTP_PROXY", IntegrationMethod="ANY",
                                          IntegrationUri=f"{base}/svc/{{proxy}}",
                                          PayloadFormatVersion="1.0")["IntegrationId"]
        appended = apigw.create_integration(ApiId=api_id, IntegrationType="HTTP_PROXY", IntegrationMethod="GET",
                                            IntegrationUri=base, PayloadFormatVersion="1.0")["IntegrationId"]
        apigw.create_route(ApiId=api_id, RouteKey="ANY /api/{proxy+}", Target=f"integrations/{mapped}")
        apigw.create_route(ApiId=api_id, RouteKey="$default", Target=f"integrations/{appended}")
        apigw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
        url = f"{nimbus.endpoint}/_nimbus/execute-api/{api_id}"

        put = requests.put(f"{url}/api/items/7?q=1", data=b"payload", headers={"x-trace": "t1"}, timeout=30)
        assert (put.status_code, put.text, put.headers["x-backend"]) == (202, "from the backend", "yes")
        got = requests.get(f"{url}/health", timeout=30)
        assert got.status_code == 202
        assert seen == [("PUT", "/svc/items/7?q=1", "t1", b"payload"), ("GET", "/health", None, b"")]
    finally:
        backend.shutdown()


def test_an_aws_iam_route_takes_only_signed_callers_allowed_to_invoke_it(nimbus, apigw, lambda_client):
    name, arn = function(lambda_client, BARE)
    api = apigw.create_api(Name=f"iam-{uuid.uuid4().hex[:6]}", ProtocolType="HTTP", Target=arn)
    [route] = apigw.get_routes(ApiId=api["ApiId"])["Items"]
    apigw.update_route(ApiId=api["ApiId"], RouteId=route["RouteId"], AuthorizationType="AWS_IAM")
    allow(lambda_client, name, api["ApiId"])
    url = f"{api['ApiEndpoint']}/reports"
    iam = nimbus.client("iam")
    user = f"caller-{uuid.uuid4().hex[:6]}"
    iam.create_user(UserName=user)
    keys = iam.create_access_key(UserName=user)["AccessKey"]

    def signed_get():
        request = botocore.awsrequest.AWSRequest(method="GET", url=url)
        credentials = botocore.credentials.Credentials(keys["AccessKeyId"], keys["SecretAccessKey"])
        botocore.auth.SigV4Auth(credentials, "execute-api", REGION).add_auth(request)
        return requests.get(url, headers=dict(request.headers.items()), timeout=30)

    assert requests.get(url, timeout=30).status_code == 403
    assert signed_get().status_code == 403, "the user may not invoke the API yet"
    iam.put_user_policy(UserName=user, PolicyName="invoke", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "execute-api:Invoke",
                                                "Resource": f"arn:aws:execute-api:{REGION}:000000000000:{api['ApiId']}/*"}]}))
    answered = signed_get()
    assert answered.status_code == 200, answered.text
    assert answered.json()["path"] == "/reports"


# Lets in the requests carrying the right key, with what it knows of the caller.
GATEKEEPER = b"""def handler(event, context):
    key = event["headers"].get("x-key")
    return {"isAuthorized": key == "open-sesame", "context": {"who": "tester", "route": event["routeArn"]}}
"""


def test_a_lambda_authorizer_decides_with_a_simple_response(nimbus, apigw, lambda_client):
    name, arn = function(lambda_client, ECHO)
    gate_name, gate_arn = function(lambda_client, GATEKEEPER)
    api = apigw.create_api(Name=f"gated-{uuid.uuid4().hex[:6]}", ProtocolType="HTTP", Target=arn)
    gate = apigw.create_authorizer(ApiId=api["ApiId"], AuthorizerType="REQUEST", Name="gate",
                                   AuthorizerUri=gate_arn, AuthorizerPayloadFormatVersion="2.0",
                                   EnableSimpleResponses=True, IdentitySource=["$request.header.x-key"],
                                   AuthorizerResultTtlInSeconds=300)
    [route] = apigw.get_routes(ApiId=api["ApiId"])["Items"]
    apigw.update_route(ApiId=api["ApiId"], RouteId=route["RouteId"], AuthorizationType="CUSTOM",
                       AuthorizerId=gate["AuthorizerId"])
    allow(lambda_client, name, api["ApiId"])
    url = f"{api['ApiEndpoint']}/vault"
    # The authorizer's own function needs leave to be invoked too.
    assert requests.get(url, headers={"x-key": "open-sesame"}, timeout=30).status_code == 500
    allow(lambda_client, gate_name, api["ApiId"])

    assert requests.get(url, timeout=30).status_code == 401
    assert requests.get(url, headers={"x-key": "wrong"}, timeout=30).status_code == 403
    answered = requests.get(url, headers={"x-key": "open-sesame"}, timeout=30)
    assert answered.status_code == 201, answered.text
    context = answered.json()["requestContext"]["authorizer"]["lambda"]
    assert context["who"] == "tester" and context["route"].endswith(f"{api['ApiId']}/$default/GET/vault")


def test_an_http_api_fronts_an_ecs_service(nimbus, apigw, web_image):
    """A container's public front: an HTTP_PROXY route to the host port an ECS
    service's task publishes (the host's address, which the egress policy opens here)."""
    ecs = nimbus.client("ecs")
    ecs.create_cluster(clusterName="default")
    definition = ecs.register_task_definition(family=f"front-{uuid.uuid4().hex[:6]}", networkMode="bridge",
                                              containerDefinitions=[{
                                                  "name": "web", "image": web_image, "memory": 32, "stopTimeout": 2,
                                                  "command": ["httpd", "-f", "-v", "-p", "8080", "-h", "/www"],
                                                  "portMappings": [{"containerPort": 8080, "hostPort": 0}]}])[
        "taskDefinition"]["taskDefinitionArn"]
    service = f"front-{uuid.uuid4().hex[:6]}"
    ecs.create_service(serviceName=service, taskDefinition=definition, desiredCount=1)
    try:
        def bound():
            tasks = ecs.list_tasks(serviceName=service)["taskArns"]
            described = ecs.describe_tasks(tasks=tasks)["tasks"] if tasks else []
            return [t["containers"][0]["networkBindings"][0]["hostPort"] for t in described
                    if t["lastStatus"] == "RUNNING" and t["containers"][0].get("networkBindings")]
        assert eventually(bound, timeout=60)
        [port] = bound()
        api_id = apigw.create_api(Name=f"front-{uuid.uuid4().hex[:6]}", ProtocolType="HTTP")["ApiId"]
        integration = apigw.create_integration(ApiId=api_id, IntegrationType="HTTP_PROXY", IntegrationMethod="ANY",
                                               IntegrationUri=f"http://{host_address()}:{port}",
                                               PayloadFormatVersion="1.0")["IntegrationId"]
        apigw.create_route(ApiId=api_id, RouteKey="GET /{proxy+}", Target=f"integrations/{integration}")
        apigw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
        url = f"{nimbus.endpoint}/_nimbus/execute-api/{api_id}/index.html"
        assert eventually(lambda: requests.get(url, timeout=10).text == "hello from a nimbus task\n", timeout=20)
    finally:
        ecs.delete_service(service=service, force=True)


def test_a_stage_throttles_its_routes(nimbus, apigw, lambda_client):
    name, arn = function(lambda_client, BARE)
    api = apigw.create_api(Name=f"throttled-{uuid.uuid4().hex[:6]}", ProtocolType="HTTP", Target=arn)
    allow(lambda_client, name, api["ApiId"])
    apigw.update_stage(ApiId=api["ApiId"], StageName="$default",
                       DefaultRouteSettings={"ThrottlingBurstLimit": 2, "ThrottlingRateLimit": 0.01})
    codes = [requests.get(f"{api['ApiEndpoint']}/x", timeout=30).status_code for _ in range(4)]
    assert codes == [200, 200, 429, 429]
    refused = requests.get(f"{api['ApiEndpoint']}/x", timeout=30)
    assert refused.json() == {"message": "Too Many Requests"}


# Answers with an IAM policy allowing GET /public only.
POLICY_GATE = b"""def handler(event, context):
    arn = event["routeArn"].rsplit("/", 2)[0]
    return {"principalId": "caller", "policyDocument": {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": arn + "/GET/public"}]}}
"""


def test_a_cached_authorizer_policy_is_judged_for_each_route(nimbus, apigw, lambda_client):
    name, arn = function(lambda_client, BARE)
    gate_name, gate_arn = function(lambda_client, POLICY_GATE)
    api = apigw.create_api(Name=f"policy-{uuid.uuid4().hex[:6]}", ProtocolType="HTTP", Target=arn)
    gate = apigw.create_authorizer(ApiId=api["ApiId"], AuthorizerType="REQUEST", Name="policy",
                                   AuthorizerUri=gate_arn, AuthorizerPayloadFormatVersion="2.0",
                                   IdentitySource=["$request.header.Authorization"], AuthorizerResultTtlInSeconds=300)
    [route] = apigw.get_routes(ApiId=api["ApiId"])["Items"]
    apigw.update_route(ApiId=api["ApiId"], RouteId=route["RouteId"], AuthorizationType="CUSTOM",
                       AuthorizerId=gate["AuthorizerId"])
    allow(lambda_client, name, api["ApiId"])
    allow(lambda_client, gate_name, api["ApiId"])
    headers = {"Authorization": "token-1"}
    assert requests.get(f"{api['ApiEndpoint']}/public", headers=headers, timeout=30).status_code == 200
    # The same identity, answered from the cache, is still refused elsewhere.
    assert requests.get(f"{api['ApiEndpoint']}/admin", headers=headers, timeout=30).status_code == 403
    # A path stepping out with `..` goes nowhere.
    assert requests.get(f"{api['ApiEndpoint']}/public/%2e%2e/admin", headers=headers, timeout=30).status_code == 404
