"""What the router tells operators: metrics, request activity and access lines, its own log."""
