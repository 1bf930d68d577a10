"""API resources: ``client.chat.completions`` and ``client.models``."""

from .chat import AsyncChat, AsyncCompletions, Chat, Completions
from .models import AsyncModels, Models

__all__ = ["Chat", "Completions", "AsyncChat", "AsyncCompletions", "Models", "AsyncModels"]
