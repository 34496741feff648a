"""Streams that survive their runtime: the relay that continues a stream (relay.py) and each API's continuation."""
