"""Authentication: the API key guard for /v1 and its in-memory caches."""
