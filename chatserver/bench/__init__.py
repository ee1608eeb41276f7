"""The load benchmark (``python -m chatserver.bench``): see docs/performance.md."""
