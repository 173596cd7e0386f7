#!/usr/bin/env python3
"""An osquery extension written with PyPI `osquery` (the official Python SDK), used as a foreign
extension in the core's tests.

    .venv/bin/python3 Tests/Peers/python/osquery_extension.py --socket S [--timeout T] [--interval I] [--verbose]
    Tests/Peers/python/osquery_extension.ext ...   (the same, through an executable .ext wrapper)

Registers as extension "py_ext" with three plugins:
  table  py_table   columns name TEXT, value INTEGER, big BIGINT, ratio DOUBLE; 5 fixed rows
  logger py_logger  answers as the SDK does (see below)
  config py_config  genConfig -> {"main": <options custom_py=yes, schedule py_q every 1 s>}

If env OSQ_PY_EXT_RECORD names a file, every table request (the whole request map, including the
"context" JSON string) and every logger request is appended to it as one JSON line:
  {"plugin": "py_table", "request": {...}}
  {"plugin": "py_logger", "request": {...}, "code": N}

Behaviour that comes from PyPI osquery itself (3.1.1), not from this file:
  - logger: "string"/"snapshot"/"health" go to log_string/log_snapshot/log_health (code 0 here);
    "init" and "status" are answered code 1 "Use Glog for status logging"; any other request,
    including {"action": "features"}, is answered code 1 "Not a valid logger plugin action"
    (so a core reading features from status.code sees 1 = "supports status logs").
  - table: rows are stringified with str(); an unknown action raises inside the SDK (it builds
    ExtensionResponse(code=...)), which the Thrift processor turns into an exception reply.
  - call() routes only the "table", "config" and "logger" registries; others get code 1.
  - --timeout/--interval must be integers (argparse type=int); without --verbose an unreachable
    socket makes start_extension return quietly (exit 0); the server is TSimpleServer (one
    connection at a time); shutdown() exits the process with os._exit(0) one second later; the
    ping thread exits with os._exit(1) when the manager stops answering.
"""

import json
import os
import sys
import threading

import osquery
from osquery.extensions.ttypes import ExtensionStatus

NAME = "py_ext"
VERSION = "1.0.0"

ROWS = [
    {"name": "alpha", "value": 1, "big": 1 << 40, "ratio": 0.5},
    {"name": "beta", "value": -2, "big": -(1 << 62), "ratio": 1.25},
    {"name": "gamma", "value": 2147483647, "big": 9223372036854775807, "ratio": -3.0},
    {"name": "delta", "value": 0, "big": 0, "ratio": 0.0},
    {"name": "epsilon", "value": 42, "big": 1234567890123, "ratio": 3.5},
]

CONFIG = {
    "options": {"custom_py": "yes"},
    "schedule": {"py_q": {"query": "select * from py_table", "interval": 1}},
}

_record_lock = threading.Lock()


def record(entry):
    path = os.environ.get("OSQ_PY_EXT_RECORD")
    if not path:
        return
    line = json.dumps(entry, sort_keys=True, ensure_ascii=False)
    with _record_lock:
        with open(path, "a", encoding="utf-8", errors="surrogateescape") as f:
            f.write(line + "\n")


@osquery.register_plugin
class PyTable(osquery.TablePlugin):
    def name(self):
        return "py_table"

    def columns(self):
        return [
            osquery.TableColumn(name="name", type=osquery.STRING),
            osquery.TableColumn(name="value", type=osquery.INTEGER),
            osquery.TableColumn(name="big", type="BIGINT"),
            osquery.TableColumn(name="ratio", type="DOUBLE"),
        ]

    def call(self, context):
        # Record the request as received (before the SDK parses "context"), then let the SDK route it.
        record({"plugin": "py_table", "request": dict(context)})
        return super().call(context)

    def generate(self, context):
        return [dict(row) for row in ROWS]


@osquery.register_plugin
class PyLogger(osquery.LoggerPlugin):
    def name(self):
        return "py_logger"

    def call(self, context):
        response = super().call(context)
        record({"plugin": "py_logger", "request": dict(context), "code": response.status.code})
        return response

    def log_string(self, value):
        return ExtensionStatus(code=0, message="OK")

    def log_snapshot(self, value):
        return ExtensionStatus(code=0, message="OK")

    def log_health(self, value):
        return ExtensionStatus(code=0, message="OK")


@osquery.register_plugin
class PyConfig(osquery.ConfigPlugin):
    def name(self):
        return "py_config"

    def content(self):
        return [{"main": json.dumps(CONFIG, sort_keys=True)}]


if __name__ == "__main__":
    osquery.start_extension(name=NAME, version=VERSION)
    sys.exit(0)
