"""Event invocations: accepted at once, run from a durable queue, retried on error,
and not lost when the server is killed."""

import json
import time

from conftest import create_function, zip_function


def test_an_event_invocation_runs_in_the_background(lambda_client, unique_name, callbacks):
    create_function(lambda_client, unique_name, zip_function("py_callback"), Environment={"Variables": {"CALLBACK_URL": callbacks.url}})
    response = lambda_client.invoke(FunctionName=unique_name, InvocationType="Event", Payload=json.dumps({"n": 1}))
    assert response["StatusCode"] == 202
    request_id = response["ResponseMetadata"]["RequestId"]
    posts = callbacks.wait_for(1)
    assert posts == [{"request_id": request_id, "event": {"n": 1}}]


def test_a_failing_event_is_retried_twice(lambda_client, unique_name, callbacks):
    create_function(lambda_client, unique_name, zip_function("py_callback"), Environment={"Variables": {"CALLBACK_URL": callbacks.url}})
    response = lambda_client.invoke(FunctionName=unique_name, InvocationType="Event", Payload=json.dumps({"fail": True}))
    request_id = response["ResponseMetadata"]["RequestId"]
    posts = callbacks.wait_for(3)
    assert [post["request_id"] for post in posts] == [request_id] * 3
    time.sleep(3)
    assert len(callbacks.posts) == 3, "one attempt and two retries, no more"


def test_an_event_accepted_before_sigkill_runs_after_restart(fresh_nimbus, callbacks):
    server = fresh_nimbus()
    client = server.client("lambda")
    name = "survivor"
    create_function(
        client, name, zip_function("py_callback"), Timeout=10, Environment={"Variables": {"CALLBACK_URL": callbacks.url}}
    )
    response = client.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"pause": 3}))
    request_id = response["ResponseMetadata"]["RequestId"]
    time.sleep(0.5)
    server.kill()  # SIGKILL while the event runs: its runtime dies with the server
    assert callbacks.posts == []

    fresh_nimbus()
    posts = callbacks.wait_for(1)
    assert [post["request_id"] for post in posts] == [request_id]
