"""OpenAI-compatible HTTP layer for LLaVA-NeXT-Interleave on vLLM.

Request path: ``cli`` -> ``settings`` -> ``app`` (lifespan, engine) -> ``routes`` -> ``schemas`` ->
``media`` -> ``prompt`` -> ``engine`` (the only module importing vLLM) -> ``streaming``; ``metrics``,
``errors``, ``auth`` beside them. Importing this package does not import vLLM.
"""

__version__ = "0.1.0"
