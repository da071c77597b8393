"""Benchmark of the channel reports (rollups, reports, rebuilds) against the same figures
computed on read from the raw tables: see README.md here."""
