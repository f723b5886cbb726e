"""One module per CLI command: each a typed function that prints results and returns an exit code."""
