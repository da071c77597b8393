"""Benchmark of the WeCom callback endpoint (ingest only): see README.md here."""
