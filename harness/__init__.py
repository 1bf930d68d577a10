"""Helpers shared by the tests and the benchmarks (not shipped in the package).

``harness.servers`` starts a server process and waits until it is ready; ``harness.media`` makes test media.
Importable from ``tests/`` (pytest ``pythonpath = ["."]``) and from ``bench/`` (which puts the repo root on
``sys.path``).
"""
