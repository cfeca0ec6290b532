"""The web console in a real browser: Playwright drives Debian's Chromium, headless,
against the real server. One test signs in, writes a python function in the editor,
tests it, reads its output and log lines, adds a function URL and calls it; another
browses an image podman pushed and the task running it. Screenshots of the main
pages go to NIMBUS_SCREENSHOTS (default target/console-screenshots)."""

import json
import os
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import REPO, ROLE, eventually
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

