"""nimbus's runtime client for python functions: loads `_HANDLER` from the task root
and serves invocations from the Lambda Runtime API until the environment is shut down."""

import http.client
import importlib
import json
import os
import sys
import time
import traceback

API = "/2018-06-01/runtime"


class Runtime:
    def __init__(self, address):
        host, port = address.rsplit(":", 1)
        self.connection = http.client.HTTPConnection(host, int(port))

    def call(self, method, path, body=None, headers=None):
        try:
            self.connection.request(method, API + path, body=body, headers=headers or {})
            response = self.connection.getresponse()
            return response, response.read()
        except (ConnectionError, http.client.HTTPException):
            # The endpoint may close a connection (after refusing an oversized
            # response, say); the next call opens a new one.
            self.connection.close()
            if method == "GET":
                raise
            return None, b""

    def post_error(self, path, error, error_type):
        body = json.dumps(error).encode()
        headers = {"Content-Type": "application/json", "Lambda-Runtime-Function-Error-Type": error_type}
        self.call("POST", path, body, headers)


class Context:
    def __init__(self, request_id, deadline_ms, arn, client_context, identity):
        self.aws_request_id = request_id
        self.invoked_function_arn = arn
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ["AWS_LAMBDA_FUNCTION_VERSION"]
        self.memory_limit_in_mb = os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]
        self.log_group_name = os.environ["AWS_LAMBDA_LOG_GROUP_NAME"]
        self.log_stream_name = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
        self.client_context = client_context
        self.identity = identity
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(0, self._deadline_ms - int(time.time() * 1000))


def error_shape(exc):
    # The trace starts in the function's code, not in this client.
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename != __file__]
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": "",
        "stackTrace": traceback.format_list(frames),
    }


def load_handler(spec):
    module_name, _, function_name = spec.rpartition(".")
    if not module_name:
        raise LookupError(("Runtime.MalformedHandlerName", f"Bad handler '{spec}': not enough values to unpack (expected 2, got 1)"))
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except Exception as exc:
        raise LookupError(("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}")) from exc
    handler = getattr(module, function_name, None)
    if handler is None:
        raise LookupError(("Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'"))
    return handler


def optional_json(text):
    return json.loads(text) if text else None


def main():
    runtime = Runtime(os.environ["AWS_LAMBDA_RUNTIME_API"])
    sys.path.insert(0, os.environ["LAMBDA_TASK_ROOT"])
    try:
        handler = load_handler(os.environ["_HANDLER"])
    except LookupError as failure:
        error_type, message = failure.args[0]
        print(f"[ERROR] {error_type}: {message}", file=sys.stderr, flush=True)
        runtime.post_error("/init/error", {"errorMessage": message, "errorType": error_type, "stackTrace": []}, error_type)
        sys.exit(1)

    while True:
        response, body = runtime.call("GET", "/invocation/next")
        headers = response.headers
        request_id = headers["Lambda-Runtime-Aws-Request-Id"]
        context = Context(
            request_id,
            int(headers["Lambda-Runtime-Deadline-Ms"]),
            headers["Lambda-Runtime-Invoked-Function-Arn"],
            optional_json(headers.get("Lambda-Runtime-Client-Context")),
            optional_json(headers.get("Lambda-Runtime-Cognito-Identity")),
        )
        try:
            result = handler(json.loads(body), context)
            payload = json.dumps(result).encode()
        except Exception as exc:
            error = error_shape(exc)
            error["requestId"] = request_id
            print(f"[ERROR] {error['errorType']}: {error['errorMessage']}\nTraceback (most recent call last):\n"
                  + "".join(error["stackTrace"]), file=sys.stderr, flush=True)
            runtime.post_error(f"/invocation/{request_id}/error", error, "Unhandled")
            continue
        runtime.call("POST", f"/invocation/{request_id}/response", payload, {"Content-Type": "application/json"})


if __name__ == "__main__":
    main()
