"""State survives restarts and SIGKILL: nothing acknowledged is lost, nothing
half-written shows."""

import concurrent.futures
import threading
import time

import requests

from signing import sign


def test_restart_keeps_root_credentials(fresh_nimbus):
    first = fresh_nimbus()
    keys = first.root_keys()
    first.kill()
    second = fresh_nimbus()
    assert second.root_keys() == keys
    assert second.client("sts").get_caller_identity()["Account"] == "000000000000"


def test_sigkill_during_writes_loses_nothing_acknowledged(fresh_nimbus):
    server = fresh_nimbus()
    acknowledged = []
    stop = threading.Event()

    def issue_sessions():
        client = server.client("sts")
        while not stop.is_set():
            try:
                acknowledged.append(client.get_session_token(DurationSeconds=900)["Credentials"])
            except Exception:
                # The server died under us: that request was never acknowledged.
                return

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        workers = [pool.submit(issue_sessions) for _ in range(4)]
        time.sleep(2)
        server.kill()  # SIGKILL with requests in flight
        stop.set()
        for worker in workers:
            worker.result()

    assert len(acknowledged) > 20, f"only {len(acknowledged)} writes were acknowledged"
    restarted = fresh_nimbus()
    body = b"Action=GetCallerIdentity&Version=2011-06-15"
    with requests.Session() as http:
        for issued in acknowledged:
            keys = (issued["AccessKeyId"], issued["SecretAccessKey"], issued["SessionToken"])
            response = http.post(restarted.endpoint + "/", data=body, headers=sign(restarted.endpoint + "/", body, keys=keys))
            assert response.status_code == 200, f"{issued['AccessKeyId']} was acknowledged but lost: {response.text}"
    assert requests.get(restarted.endpoint + "/_nimbus/health", timeout=10).status_code == 200
