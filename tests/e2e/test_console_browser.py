"""The web console in a real browser: Playwright drives Debian's Chromium, headless,
against the real server. One test signs in, writes a python function in the editor,
tests it, reads its output and log lines, adds a function URL and calls it; another
browses an image podman pushed and the task running it; a third sends, polls and
deletes messages of a queue, publishes to a topic the queue subscribes to, and makes
the queue a function's trigger; a fourth writes and tests a rule's pattern and sends a
test event through the rule to a queue; a fifth quick-creates an HTTP API in front of a
function, adds a route and sends it a request from the page. Screenshots of the main pages go to
NIMBUS_SCREENSHOTS (default target/console-screenshots)."""

import json
import os
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import LAMBDA_TRUST, REPO, ROLE, create_function, eventually, zip_function
from test_apigateway import zipped
from test_ecs import _get, podman_push_web_image, wait
from test_registry import podman  # noqa: F401 (a fixture)

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(os.environ.get("NIMBUS_SCREENSHOTS") or REPO / "target" / "console-screenshots")
# As root, without a display or the outside network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is installed by the test command")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, nimbus):
    """A signed-in page: the sign-in form filled with the root keys."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    started = time.monotonic()
    page.goto(f"{nimbus.endpoint}/console/")
    page.wait_for_selector("#access-key-id")
    print(f"sign-in page loaded in {time.monotonic() - started:.3f} s")
    key_id, secret = nimbus.root_keys()
    page.fill("#access-key-id", key_id)
    page.fill("#secret-access-key", secret)
    page.click("#sign-in")
    page.wait_for_selector("#principal")
    assert page.inner_text("#principal").endswith(":root")
    yield page
    assert errors == [], f"the page threw: {errors}"
    context.close()


def shot(page, name):
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def visit(page, nimbus, route, selector):
    page.goto(f"{nimbus.endpoint}/console/#{route}")
    page.wait_for_selector(selector)


def phone_shot(page, name):
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, name)
    page.set_viewport_size({"width": 1280, "height": 860})


def test_write_test_and_expose_a_python_function(page, nimbus):
    visit(page, nimbus, "/", "#dashboard .service-card")
    assert "lambda" in page.inner_text("#dashboard").lower()
    shot(page, "dashboard")

    name = f"console-{uuid.uuid4().hex[:8]}"
    visit(page, nimbus, "/functions", "#create-function")
    page.click("#create-function")
    page.wait_for_selector("#fn-editor .cm-content")
    page.select_option("#fn-blueprint", "python-hello")
    page.fill("#fn-name", name)
    page.select_option("#fn-runtime", "python3.12")
    page.select_option("#fn-role", ROLE)
    page.click("#fn-editor .cm-content")
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(
        "import json\n\n"
        "def lambda_handler(event, context):\n"
        "    print('console says hello to', event.get('name'))\n"
        "    return {'statusCode': 200, 'body': json.dumps({'greeting': 'hello ' + event.get('name', 'url')})}\n"
    )
    shot(page, "function-create")
    page.click("#fn-create")
    page.wait_for_url(f"**/console/#/functions/{name}")

    page.click("#tab-test")
    page.fill("#test-event", json.dumps({"name": "browser"}))
    page.click("#test-run")
    page.wait_for_selector("#test-status:has-text('Succeeded')")
    assert "hello browser" in page.inner_text("#test-result")
    summary = page.inner_text("#test-summary")
    for figure in ("Duration", "Billed Duration", "Max Memory Used"):
        assert figure in summary, summary
    assert "console says hello to browser" in page.inner_text("#test-log")
    shot(page, "function-test")

    page.click("#tab-triggers")
    page.click("#url-create")
    link = page.wait_for_selector("#url-value")
    url = link.get_attribute("href")
    assert ".lambda-url.us-east-1.localhost:" in url
    # *.localhost need not resolve here: connect to the server, name the host.
    address = urlparse(url)
    request = urllib.request.Request(f"http://127.0.0.1:{address.port}/", headers={"Host": address.netloc})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert json.loads(answer.read()) == {"greeting": "hello url"}
    shot(page, "function-triggers")

    page.click("#tab-monitor")
    page.wait_for_selector("#chart-invocations")
    shot(page, "function-monitor")

    visit(page, nimbus, "/functions", f"#functions-table a[href='#/functions/{name}']")
    assert "python3.12" in page.inner_text("#functions-table")
    shot(page, "functions")

    visit(page, nimbus, "/logs", "#log-groups-table")
    page.click(f"#log-groups-table a:has-text('/aws/lambda/{name}')")
    page.wait_for_selector("#log-streams-table")
    shot(page, "logs")


def test_browse_an_image_podman_pushed_and_the_task_running_it(page, nimbus, podman, tmp_path):  # noqa: F811
    repo = f"console-web-{uuid.uuid4().hex[:6]}"
    ecr = nimbus.client("ecr")
    ecr.create_repository(repositoryName=repo)
    host = podman_push_web_image(nimbus, podman, tmp_path, repo)
    [detail] = ecr.describe_images(repositoryName=repo)["imageDetails"]

    ecs = nimbus.client("ecs")
    cluster = "default"
    ecs.create_cluster(clusterName=cluster)
    family = f"console-web-{uuid.uuid4().hex[:6]}"
    definition = ecs.register_task_definition(family=family, networkMode="bridge", containerDefinitions=[{
        "name": "web", "image": f"{host}/{repo}:v1", "memory": 32, "stopTimeout": 3,
        "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
        "portMappings": [{"containerPort": 8080, "hostPort": 0}]}])["taskDefinition"]["taskDefinitionArn"]
    task = ecs.run_task(taskDefinition=definition)["tasks"][0]["taskArn"]
    try:
        wait(ecs, "running", task)
        [binding] = ecs.describe_tasks(tasks=[task])["tasks"][0]["containers"][0]["networkBindings"]
        assert eventually(lambda: _get(binding["hostPort"]) == "hello from a nimbus task\n", timeout=20)

        visit(page, nimbus, "/registry", f"#repositories-table a[href='#/registry/{repo}']")
        shot(page, "registry")
        page.click(f"#repositories-table a[href='#/registry/{repo}']")
        page.wait_for_selector("#images-table")
        images = page.inner_text("#images-table")
        assert "v1" in images and detail["imageDigest"][:19] in images
        assert f"{host}/{repo}" in page.inner_text("#push-commands")
        shot(page, "registry-repository")

        visit(page, nimbus, "/containers", f"#clusters-table a[href='#/containers/{cluster}']")
        shot(page, "containers")
        page.click(f"#clusters-table a[href='#/containers/{cluster}']")
        row = page.wait_for_selector(f"#tasks-table tr:has-text('{task.rsplit('/', 1)[1]}')")
        assert "RUNNING" in row.inner_text()
        assert f"{binding['hostPort']}->8080" in row.inner_text()
        shot(page, "containers-cluster")
    finally:
        ecs.stop_task(task=task)
        wait(ecs, "stopped", task)


def test_a_queue_a_topic_feeding_it_and_the_queue_as_a_trigger(page, nimbus, lambda_client, unique_name, callbacks):
    sqs, iam = nimbus.client("sqs"), nimbus.client("iam")
    queue = f"console-q-{uuid.uuid4().hex[:6]}"
    visit(page, nimbus, "/queues", "#queue-create")
    page.click("#queue-create")
    page.fill("#queue-name", queue)
    page.fill("#queue-visibility", "20")
    page.click("#queue-create-submit")
    page.wait_for_selector(f"#queues-table a[href='#/queues/{queue}']")
    shot(page, "queues")
    page.click(f"#queues-table a[href='#/queues/{queue}']")
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]["QueueArn"]

    page.fill("#message-body", json.dumps({"hello": "queue"}))
    page.click("#message-send")
    page.wait_for_selector("#message-sent:has-text('Sent message')")
    page.click("#messages-poll")
    row = page.wait_for_selector("#messages-table tr[data-message]")
    assert '"hello": "queue"' in row.inner_text()
    shot(page, "queue")
    phone_shot(page, "queue-phone")
    row.query_selector(".message-delete").click()
    page.wait_for_selector("#messages-table .empty-row")
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]) == ("0", "0")

    # A topic the queue subscribes to: the console lets the topic send to it.
    topic = f"console-t-{uuid.uuid4().hex[:6]}"
    visit(page, nimbus, "/topics", "#topic-create")
    page.click("#topic-create")
    page.fill("#topic-name", topic)
    page.click("#topic-create-submit")
    page.click(f"#topics-table a[href='#/topics/{topic}']")
    page.wait_for_selector(f"#subscribe-endpoint option[value='{queue_arn}']", state="attached")
    page.select_option("#subscribe-endpoint", queue_arn)
    page.click("#subscribe-submit")
    page.wait_for_selector(f"#subscriptions-table a[href='#/queues/{queue}']")
    page.fill("#publish-message", "hello from the topic")
    page.fill("#publish-subject", "greeting")
    page.click("#publish-attribute-add")
    page.fill("#publish-attributes .attribute-name", "kind")
    page.fill("#publish-attributes .attribute-value", "test")
    page.click("#publish-submit")
    page.wait_for_selector("#publish-status:has-text('Published message')")
    shot(page, "topic")
    phone_shot(page, "topic-phone")

    visit(page, nimbus, f"/queues/{queue}", "#messages-poll")

    def arrived():
        page.click("#messages-poll")
        page.wait_for_selector("#messages-status:not(:has-text('Polling'))")
        return page.query_selector("#messages-table tr[data-message]:has-text('hello from the topic')")
    assert eventually(arrived, timeout=20)
    envelope = page.inner_text("#messages-table tr[data-message]")
    assert '"Subject": "greeting"' in envelope and '"kind"' in envelope, envelope

    # The queue as a function's trigger: the role may not read it yet, which the tab
    # says in place, with the fix (an inline policy on the role) a click away.
    role = f"console-sqs-{uuid.uuid4().hex[:6]}"
    role_arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=LAMBDA_TRUST)["Role"]["Arn"]
    create_function(lambda_client, unique_name, zip_function("py_sqs"), role=role_arn,
                    Environment={"Variables": {"CALLBACK_URL": callbacks.url}})
    sqs.purge_queue(QueueUrl=url)
    visit(page, nimbus, f"/functions/{unique_name}/triggers", "#sqs-trigger-queue")
    page.wait_for_selector(f"#sqs-trigger-queue option[value='{queue_arn}']", state="attached")
    page.select_option("#sqs-trigger-queue", queue_arn)
    page.click("#sqs-trigger-add")
    page.wait_for_selector("#sqs-trigger-problem:has-text('ReceiveMessage')")
    shot(page, "function-triggers-sqs-denied")
    page.click("#sqs-trigger-grant")
    page.wait_for_selector(f"#sqs-triggers-table a[href='#/queues/{queue}']")
    assert page.inner_text("#sqs-trigger-problem") == ""
    policy = iam.get_role_policy(RoleName=role, PolicyName=f"sqs-{queue}")["PolicyDocument"]
    assert "sqs:ReceiveMessage" in json.dumps(policy)
    page.wait_for_selector("#sqs-triggers-table .mapping-state:has-text('Enabled')")
    sqs.send_message(QueueUrl=url, MessageBody="to the function")
    assert any(r["body"] == "to the function" for post in callbacks.wait_for(1, timeout=30) for r in post["records"])
    shot(page, "function-triggers-sqs")

    page.click("#sqs-triggers-table button:has-text('Disable')")
    page.wait_for_selector("#sqs-triggers-table .mapping-state:has-text('Disabled')")
    page.click("#sqs-triggers-table button:has-text('Delete')")
    page.click("#confirm-ok")
    page.wait_for_selector("#sqs-triggers-table .empty-row")
    assert lambda_client.list_event_source_mappings(FunctionName=unique_name)["EventSourceMappings"] == []


def test_a_rule_its_pattern_and_a_queue_target(page, nimbus):
    sqs, events = nimbus.client("sqs"), nimbus.client("events")
    queue = f"console-rule-q-{uuid.uuid4().hex[:6]}"
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = f"console-rule-{uuid.uuid4().hex[:6]}"
    source = f"com.example.{uuid.uuid4().hex[:6]}"

    visit(page, nimbus, "/rules", "#rule-create")
    page.click("#rule-create")
    page.wait_for_selector("#rule-pattern .cm-content")
    page.fill("#rule-name", rule)
    page.click("#rule-pattern .cm-content")
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(json.dumps({"source": [source], "detail": {"amount": [{"numeric": [">", 10]}]}}))

    # The prefilled sample event is a whole EventBridge event: made to match, then not.
    sample = json.loads(page.input_value("#pattern-event"))
    assert {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"} <= set(sample)
    sample.update(source=source, detail={"amount": 42})
    page.fill("#pattern-event", json.dumps(sample))
    page.click("#pattern-test")
    page.wait_for_selector("#pattern-result:has-text('Matches')")
    sample["detail"]["amount"] = 5
    page.fill("#pattern-event", json.dumps(sample))
    page.click("#pattern-test")
    page.wait_for_selector("#pattern-result:has-text('No match')")
    page.fill("#pattern-event", "{not json")
    page.click("#pattern-test")
    page.wait_for_selector("#pattern-result:has-text('not valid JSON')")
    shot(page, "rule-create")
    page.click("#rule-create-submit")
    page.wait_for_url(f"**/console/#/rules/default/{rule}")
    assert json.loads(events.describe_rule(Name=rule)["EventPattern"])["source"] == [source]

    # A queue target, with the statement that lets the rule send to it.
    page.wait_for_selector(f"#target-arn option[value='{queue_arn}']", state="attached")
    page.select_option("#target-arn", queue_arn)
    page.select_option("#target-input", "path")
    page.fill("#target-input-path", "$.detail")
    page.click("#target-add")
    page.wait_for_selector(f"#targets-table a[href='#/queues/{queue}']")
    assert "InputPath" in page.inner_text("#targets-table")
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"])
    [statement] = policy["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"].endswith(f":rule/{rule}")

    assert page.input_value("#event-source") == source
    page.fill("#event-detail", json.dumps({"amount": 5}))
    page.click("#event-send")
    page.wait_for_selector("#event-status:has-text('Sent event')")
    page.fill("#event-detail", json.dumps({"amount": 99, "from": "the console"}))
    page.click("#event-send")
    page.wait_for_selector("#event-status:has-text('Sent event')")
    page.fill("#event-detail", "{broken")
    page.click("#event-send")
    page.wait_for_selector("#event-status:has-text('not valid JSON')")
    page.fill("#event-detail", "{}")
    page.fill("#event-source", "")
    page.click("#event-send")
    page.wait_for_selector("#event-status:has-text('InvalidArgument')")

    bodies = []

    def received():
        bodies.extend(json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2).get("Messages", []))
        return bodies
    assert eventually(received, timeout=20)
    # Only the event that matched arrived, as its detail (the InputPath).
    assert bodies == [{"amount": 99, "from": "the console"}]
    shot(page, "rule")
    phone_shot(page, "rule-phone")

    visit(page, nimbus, "/rules", f"#rules-table a[href='#/rules/default/{rule}']")
    assert source in page.inner_text(f"#rules-table tr[data-rule='{rule}']")
    shot(page, "rules")
    phone_shot(page, "rules-phone")

    page.click(f"#rules-table a[href='#/rules/default/{rule}']")
    page.click("#targets-table button:has-text('Remove')")
    page.click("#confirm-ok")
    page.wait_for_selector("#targets-table .empty-row")
    assert events.list_targets_by_rule(Rule=rule)["Targets"] == []
    page.click("#rule-delete")
    page.click("#confirm-ok")
    page.wait_for_url("**/console/#/rules")
    page.wait_for_selector("#rules-table")
    assert rule not in [r["Name"] for r in events.list_rules()["Rules"]]


def test_an_http_api_in_front_of_a_function_and_its_request_tester(page, nimbus, lambda_client, unique_name):
    create_function(lambda_client, unique_name, zipped(
        "import json\n\n"
        "def handler(event, context):\n"
        "    return {'statusCode': 200, 'body': json.dumps({'route': event['routeKey'], "
        "'item': (event.get('pathParameters') or {}).get('id')})}\n"))
    fn_arn = lambda_client.get_function(FunctionName=unique_name)["Configuration"]["FunctionArn"]
    name = f"console-api-{uuid.uuid4().hex[:6]}"

    visit(page, nimbus, "/apis", "#api-create")
    page.click("#api-create")
    page.fill("#api-name", name)
    page.wait_for_selector(f"#api-function option[value='{fn_arn}']", state="attached")
    page.select_option("#api-function", fn_arn)
    assert page.is_checked("#api-grant")
    page.click("#api-create-submit")
    page.wait_for_url("**/console/#/apis/*")
    api_id = page.url.rsplit("/", 1)[1]
    # The quick create's integration, route and stage, and the grant that lets it invoke.
    [integration] = nimbus.client("apigatewayv2").get_integrations(ApiId=api_id)["Items"]
    page.wait_for_selector("#routes-table tr[data-route='$default']")
    page.wait_for_selector("#stages-table tr[data-stage='$default']")
    policy = json.loads(lambda_client.get_policy(FunctionName=unique_name)["Policy"])
    [statement] = policy["Statement"]
    assert statement["Principal"] == {"Service": "apigateway.amazonaws.com"}
    assert statement["Condition"]["ArnLike"]["AWS:SourceArn"].endswith(f":{api_id}/*")

    page.fill("#route-key", "GET /items/{id}")
    page.select_option("#route-integration", integration["IntegrationId"])
    page.click("#route-add")
    page.wait_for_selector("#routes-table tr[data-route='GET /items/{id}']")
    assert unique_name in page.inner_text("#routes-table tr[data-route='GET /items/{id}']")

    page.select_option("#tester-method", "GET")
    page.fill("#tester-path", "/items/42")
    page.fill("#tester-headers", "X-Test: console")
    page.click("#tester-send")
    page.wait_for_selector("#tester-status:has-text('200')")
    assert json.loads(page.inner_text("#tester-response-body")) == {"route": "GET /items/{id}", "item": "42"}
    assert "apigw-requestid" in page.inner_text("#tester-response-headers")
    shot(page, "api")
    phone_shot(page, "api-phone")

    visit(page, nimbus, "/apis", f"#apis-table a[href='#/apis/{api_id}']")
    assert "/_nimbus/execute-api/" in page.inner_text(f"#apis-table tr[data-api='{api_id}']")
    shot(page, "apis")
    phone_shot(page, "apis-phone")
    page.click(f"#apis-table tr[data-api='{api_id}'] button:has-text('Delete')")
    page.click("#confirm-ok")
    # Other tests' APIs may share the server: this one's row goes.
    page.wait_for_selector(f"#apis-table tr[data-api='{api_id}']", state="detached")


def test_a_rest_api_its_methods_stages_and_request_tester(page, nimbus, lambda_client, unique_name):
    create_function(lambda_client, unique_name, zipped(
        "import json\n\n"
        "def handler(event, context):\n"
        "    return {'statusCode': 200, 'body': json.dumps({'resource': event['resource'], "
        "'path': event['path']})}\n"))
    fn_arn = lambda_client.get_function(FunctionName=unique_name)["Configuration"]["FunctionArn"]
    rest = nimbus.client("apigateway")
    api = rest.create_rest_api(name=f"console-rest-{uuid.uuid4().hex[:6]}")
    proxy = rest.create_resource(restApiId=api["id"], parentId=api["rootResourceId"], pathPart="{proxy+}")["id"]
    rest.put_method(restApiId=api["id"], resourceId=proxy, httpMethod="ANY", authorizationType="NONE",
                    apiKeyRequired=False)
    rest.put_integration(restApiId=api["id"], resourceId=proxy, httpMethod="ANY", type="AWS_PROXY",
                         integrationHttpMethod="POST",
                         uri=f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{fn_arn}/invocations")
    rest.create_deployment(restApiId=api["id"], stageName="Prod")
    lambda_client.add_permission(FunctionName=unique_name, StatementId="rest", Action="lambda:InvokeFunction",
                                 Principal="apigateway.amazonaws.com",
                                 SourceArn=f"arn:aws:execute-api:us-east-1:000000000000:{api['id']}/*")

    visit(page, nimbus, "/apis", f"#restapis-table tr[data-restapi='{api['id']}']")
    assert "Prod" in page.inner_text(f"#restapis-table tr[data-restapi='{api['id']}']")
    page.click(f"#restapis-table a[href='#/restapis/{api['id']}']")
    page.wait_for_selector("#rest-methods-table tr[data-method='ANY /{proxy+}']")
    assert unique_name in page.inner_text("#rest-methods-table tr[data-method='ANY /{proxy+}']")
    assert "/_nimbus/execute-api/" in page.inner_text("#rest-stages-table tr[data-stage='Prod']")
    page.select_option("#tester-method", "GET")
    page.fill("#tester-path", "/hello/console")
    page.click("#tester-send")
    page.wait_for_selector("#tester-status:has-text('200')")
    assert json.loads(page.inner_text("#tester-response-body")) == {"resource": "/{proxy+}", "path": "/hello/console"}

    visit(page, nimbus, "/apis", f"#restapis-table tr[data-restapi='{api['id']}']")
    page.click(f"#restapis-table tr[data-restapi='{api['id']}'] button:has-text('Delete')")
    page.click("#confirm-ok")
    page.wait_for_selector(f"#restapis-table tr[data-restapi='{api['id']}']", state="detached")
