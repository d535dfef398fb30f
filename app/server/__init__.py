"""HTTP layer of batchserve: the only place FastAPI is imported."""
