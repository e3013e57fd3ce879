"""Benchmark commands: each measures, writes ``benchmarks/results/<name>.json`` and prints its table
(``common``: the shared harness); ``report_docs`` writes ``docs/benchmarks.md``'s tables from them."""
