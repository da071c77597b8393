"""Benchmarks, run by hand (see bench/README.md); not collected by pytest."""
