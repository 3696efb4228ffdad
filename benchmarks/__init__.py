"""Scale benchmarks for syndicator; run ``python -m benchmarks`` (``--quick`` for a smoke run)."""
