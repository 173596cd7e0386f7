#!/usr/bin/env python3
"""The benchmark table written with PyPI `osquery` (the official Python SDK), for comparison
with the same table written with the Swift SDK (Benchmarks/ExtensionBench).

    .venv/bin/python3 Tests/Peers/python/bench_extension.py --socket S --timeout 5 --interval 1 [--rows N]

Table `py_bench_rows`: columns a TEXT, b BIGINT, c DOUBLE, d TEXT; N rows (default 100000).
"""

import os
import sys

ROWS = int(os.environ.get("BENCH_ROWS", "100000"))

import osquery  # noqa: E402  (PyPI osquery SDK)


@osquery.register_plugin
class BenchTable(osquery.TablePlugin):
    def name(self):
        return "py_bench_rows"

    def columns(self):
        return [
            osquery.TableColumn(name="a", type=osquery.STRING),
            osquery.TableColumn(name="b", type=osquery.INTEGER),
            osquery.TableColumn(name="c", type=osquery.STRING),
            osquery.TableColumn(name="d", type=osquery.STRING),
        ]

    def generate(self, context):
        return [{"a": "row%d" % i, "b": str(i), "c": str(i * 0.5), "d": "constant"} for i in range(ROWS)]


if __name__ == "__main__":
    osquery.start_extension(name="py_bench", version="1.0.0")
