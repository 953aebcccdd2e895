"""Watching served traffic: drift against the training reference (Evidently) and CTR degradation."""
