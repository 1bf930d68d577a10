"""OpenAI-compatible HTTP layer for LLaVA-NeXT-Interleave on vLLM.

Request path: ``cli`` -> ``settings`` -> ``app`` (lifespan, engine) -> ``routes`` -> ``schemas`` ->
``media`` -> ``prompt`` -> ``engine`` (the only module importing vLLM) -> ``streaming``; ``metrics``,
``errors``, ``auth`` beside them. Importing this package does not import vLLM.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("llava-interleave-serve")
    """The installed distribution's version (pyproject.toml ``[project].version``: the one place it is written)."""
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"
