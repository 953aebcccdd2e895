"""Monitoring of the served model: the training reference kept in the bundle, windows of the traffic log, the
Evidently drift report, and the Prometheus gauges of the latest verdict.

Layering: this package may import the serving, registry and ranking layers below it, never the stages or the CLI;
the ranking layer never imports it (a bundle's ``reference.parquet`` is an opaque frame to the recommender).
"""
