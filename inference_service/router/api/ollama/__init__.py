"""Ollama's native API over every runtime: the routes (:mod:`.routes`), the request bodies
(:mod:`.schemas`), their translation to the internal OpenAI requests (:mod:`.requests`) and
of the answers back (:mod:`.replies`), and what is said about the models (:mod:`.catalog`)."""
