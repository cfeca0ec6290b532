"""Misbehaves on request: raises, exits, hangs or answers too much."""

import os
import time


class CustomError(Exception):
    pass


def handler(event, context):
    mode = event.get("mode")
    if mode == "raise":
        raise CustomError("something broke")
    if mode == "exit":
        os._exit(3)
    if mode == "hang":
        time.sleep(60)
    if mode == "big":
        return "x" * (7 * 1024 * 1024)
    return {"ok": True}
