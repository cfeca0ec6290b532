"""Posts its event to CALLBACK_URL after a pause, so a test can see it ran; then
fails if the event asks it to."""

import json
import os
import time
import urllib.request


def handler(event, context):
    time.sleep(event.get("pause", 0))
    body = json.dumps({"request_id": context.aws_request_id, "event": event}).encode()
    urllib.request.urlopen(urllib.request.Request(os.environ["CALLBACK_URL"], data=body, method="POST"), timeout=10)
    if event.get("fail"):
        raise RuntimeError("failing after the post, as asked")
    return {"posted": True}
