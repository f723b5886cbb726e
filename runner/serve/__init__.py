"""`runbook serve`: alerts in over HTTP, a durable queue of runs on the store, workers that execute them.
Only the serve command imports this package (Starlette, uvicorn and prometheus-client with it)."""
