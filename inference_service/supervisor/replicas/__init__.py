"""Replicas: one model id served by several processes (``replica_set``), and which one serves a request (``routing``)."""
