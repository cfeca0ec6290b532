"""Answers function URL requests: a shaped response with status, headers, cookies and
a body telling what it received; plain JSON at /plain; a failure at /fail."""

import base64
import json


def handler(event, context):
    path = event["rawPath"]
    if path == "/fail":
        raise RuntimeError("asked to fail")
    if path == "/plain":
        return {"plain": True, "query": event.get("queryStringParameters")}
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("latin-1")
    return {
        "statusCode": 201,
        "headers": {"x-seen-method": event["requestContext"]["http"]["method"], "content-type": "text/plain"},
        "cookies": ["a=1", "b=2; Path=/"],
        "body": json.dumps({"path": path, "cookies": event.get("cookies"), "body": body,
                            "query": event.get("rawQueryString"), "version": event["version"]}),
    }
