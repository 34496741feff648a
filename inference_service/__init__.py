"""inference-service: an OpenAI-compatible router in front of supervised local LLM runtimes."""

__version__ = "0.1.0"
