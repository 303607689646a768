"""What a running server is doing: Prometheus metrics, request ids and JSON request logs."""
