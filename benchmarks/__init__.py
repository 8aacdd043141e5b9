"""The benchmark suites and scripts.

A package so that pytest puts the repository root, not this folder, on
``sys.path``: ``benchmarks/distributed.py`` would otherwise shadow Dask's
``distributed`` package in the test process and in the workers it spawns.
"""
