"""Plots drawn from traces and results: `timeline` (swimlanes of one run)."""
