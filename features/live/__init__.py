"""Live market data: the ingest runner, data freshness per asset, and their metrics."""
