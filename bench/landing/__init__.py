"""Benchmark of the tracked-link landing page /l/<slug>/: see README.md here."""
