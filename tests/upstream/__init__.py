"""A local fake PyPI for tests and benchmarks: the index data, its HTTP server with faults, and corpora."""
