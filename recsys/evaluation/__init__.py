"""Offline evaluation: top-k ranking metrics, beyond-accuracy metrics and paired bootstrap comparisons."""
