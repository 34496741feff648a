"""HTTP serving and its guards: the server, middleware, connection limits, body reading, error envelopes, shutdown."""
