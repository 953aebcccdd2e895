"""Watching served traffic: drift against the training reference kept in the bundle (Evidently), CTR
degradation per model version, and the Prometheus gauges of the latest verdicts.

Layering: this package may import the experiments, serving, registry and ranking layers below it, never the
stages or the CLI; the ranking layer never imports it (a bundle's ``reference.parquet`` is an opaque frame to the
recommender).
"""
