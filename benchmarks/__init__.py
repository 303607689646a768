"""The gridsync benchmark suite: ``make bench`` (``python -m benchmarks``).

Every scenario runs against the real server, ``gridsync serve`` in its own process, over HTTP on
loopback, on SQLite and on PostgreSQL; every figure is a ratio measured in the same run or a
median of several runs with its min and max. See docs/benchmarks.md.
"""
