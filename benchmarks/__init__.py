"""Benchmarks of the recommendation system, run from the repository root as ``python -m benchmarks.NAME``.

Each prints rich tables and writes its figures as JSON under ``bench-results/`` (see README.md beside this file);
:mod:`benchmarks.harness` holds what they share.
"""
