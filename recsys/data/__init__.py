"""Fetch MovieLens-100K, load typed frames, replay its timeline week by week, and split it."""
