"""The doors requests come in by: the uvicorn protocol (`uvicorn`) and ASGI (`asgi`). They turn
bytes into exchanges and replies back into bytes."""
