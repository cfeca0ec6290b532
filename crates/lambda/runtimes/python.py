"""nimbus's runtime client for python functions: loads `_HANDLER` from the task root
and serves invocations from the Lambda Runtime API until the environment is shut down."""

import importlib
import json
import os
import socket
import sys
import time

API = "/2018-06-01/runtime"


class Runtime:
    """A keep-alive HTTP/1.1 client for the Runtime API, on a bare socket: importing
    http.client would cost a cold start more than everything else here."""

    def __init__(self, address):
        host, port = address.rsplit(":", 1)
        self.address = (host, int(port))
        self.connection = None
        self.buffered = b""

    def _receive(self):
        chunk = self.connection.recv(65536)
        if not chunk:
            raise ConnectionError("the Runtime API closed the connection")
        self.buffered += chunk

    def _read_until(self, marker):
        while marker not in self.buffered:
            self._receive()
        head, self.buffered = self.buffered.split(marker, 1)
        return head

    def _read_exactly(self, size):
        while len(self.buffered) < size:
            self._receive()
        body, self.buffered = self.buffered[:size], self.buffered[size:]
        return body

    def _exchange(self, method, path, body, headers):
        if self.connection is None:
            self.connection = socket.create_connection(self.address)
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buffered = b""
        lines = [f"{method} {API}{path} HTTP/1.1", "Host: runtime", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        status_line, *header_lines = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        response_headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            response_headers[name.strip().lower()] = value.strip()
        if response_headers.get("transfer-encoding", "").lower() == "chunked":
            payload = b""
            while True:
                size = int(self._read_until(b"\r\n").split(b";")[0], 16)
                chunk = self._read_exactly(size + 2)[:-2]
                if size == 0:
                    break
                payload += chunk
        else:
            payload = self._read_exactly(int(response_headers.get("content-length", "0")))
        if response_headers.get("connection", "").lower() == "close":
            self.close()
        return int(status_line.split()[1]), response_headers, payload

    def close(self):
        if self.connection is not None:
            self.connection.close()
        self.connection = None

    def call(self, method, path, body=b"", headers=None):
        try:
            return self._exchange(method, path, body, headers or {})
        except OSError:
            # The endpoint may close a connection (after refusing an oversized
            # response, say); the next call opens a new one.
            self.close()
            if method == "GET":
                raise
            return None, {}, b""

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
    import traceback  # only when something fails: it is slow to import

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
        _, headers, body = runtime.call("GET", "/invocation/next")
        request_id = headers.get("lambda-runtime-aws-request-id")
        if request_id is None:
            sys.exit(0)  # the environment is shutting down
        context = Context(
            request_id,
            int(headers["lambda-runtime-deadline-ms"]),
            headers["lambda-runtime-invoked-function-arn"],
            optional_json(headers.get("lambda-runtime-client-context")),
            optional_json(headers.get("lambda-runtime-cognito-identity")),
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
