"""Benchmark commands (not timed tests): each one measures, prints a table, writes its figures to
``benchmarks/results/<name>.json`` and rewrites its own section of ``docs/benchmarks.md``.

``common`` holds what every benchmark shares: the hardware description, the results-file
writer, the docs-section writer and a peak-memory sampler for a process tree.
"""
