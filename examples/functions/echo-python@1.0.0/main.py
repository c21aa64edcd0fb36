#!/usr/bin/env python3
"""echo-python: a process-mode fezz plugin (runtime "process", entry main.py).

- /json -> 200 application/json {"lang":"python","message":"hello from python","path":"/json","method":...}
- anything else -> 200, the request body echoed byte for byte, with x-echo-* headers.
"""
import os
import sys

# The SDK is a single file in sdk/python; a deployed function can ship a copy beside main.py.
sys.dont_write_bytecode = True  # leave no __pycache__ in the function or sdk directories
_here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _here)
sys.path.insert(1, os.path.join(_here, "..", "..", "..", "sdk", "python"))

import fezz  # noqa: E402


def handle(req: fezz.Request) -> fezz.Response:
    if req.path == "/json":
        return fezz.Response.json(
            200, {"lang": "python", "message": "hello from python", "path": req.path, "method": req.method}
        )
    headers = {
        "content-type": req.header("content-type", "application/octet-stream"),
        "x-echo-method": req.method,
        "x-echo-path": req.path,
        "x-echo-query": req.query,
    }
    test = req.header("x-fezz-test")
    if test is not None:
        headers["x-echo-test"] = test
    return fezz.Response(200, headers, req.body)


if __name__ == "__main__":
    fezz.main(handle)
