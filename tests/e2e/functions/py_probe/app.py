"""Reports what a function sees of itself: its context object and environment."""

import os
import time
import uuid

# Names this execution environment: pids repeat across sandboxes (each has its own
# pid namespace), this does not.
ENVIRONMENT = uuid.uuid4().hex


def handler(event, context):
    if "sleep" in event:
        time.sleep(event["sleep"])
    print("probe invoked with", event)
    return {
        "event": event,
        "context": {
            "aws_request_id": context.aws_request_id,
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "client_context": context.client_context,
        },
        "env": {key: os.environ.get(key) for key in (
            "_HANDLER", "AWS_REGION", "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_NAME",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_LOG_GROUP_NAME",
            "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "TZ", "GREETING",
        )},
        "environment": ENVIRONMENT,
    }
