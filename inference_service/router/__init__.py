"""The HTTP router: the OpenAI, Anthropic and Responses APIs over the supervisor's models (see app.py)."""
