"""Python client SDK for the LLaVA-NeXT-Interleave server: message builders for images, videos and 3D
scenes interleaved with text, on top of the ``openai`` package.

::

    from llava_interleave_client import Client, image, user, video

    client = Client()  # an openai.OpenAI for http://127.0.0.1:8000/v1 or $INTERLEAVE_BASE_URL
    model = client.models.list().data[0].id
    reply = client.chat.completions.create(
        model=model,
        messages=[user("Compare", image("a.png"), video("clip.mp4", num_frames=8), "what changed?")],
        max_tokens=64,
    )
    print(reply.choices[0].message.content)

Errors, streams and response types are openai's, re-exported here.
"""

from importlib.metadata import version as _version

from openai import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AsyncStream,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    OpenAIError,
    PermissionDeniedError,
    RateLimitError,
    Stream,
    UnprocessableEntityError,
)
from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from ._client import DEFAULT_BASE_URL, NO_API_KEY, AsyncClient, Client
from ._media import MediaError, sniff_media_type
from .builders import assistant, image, message, scene, system, text, user, video
from .types import ContentPart, ImagePlacement, ScenePart, VideoPart

__version__ = _version("llava-interleave-client")

__all__ = [
    "__version__",
    "Client",
    "AsyncClient",
    "DEFAULT_BASE_URL",
    "NO_API_KEY",
    # builders and their types
    "user",
    "system",
    "assistant",
    "message",
    "text",
    "image",
    "video",
    "scene",
    "sniff_media_type",
    "MediaError",
    "ContentPart",
    "VideoPart",
    "ScenePart",
    "ImagePlacement",
    # openai's
    "Stream",
    "AsyncStream",
    "ChatCompletion",
    "ChatCompletionChunk",
    "Model",
    "OpenAIError",
    "APIError",
    "APIConnectionError",
    "APITimeoutError",
    "APIResponseValidationError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "UnprocessableEntityError",
    "RateLimitError",
    "InternalServerError",
]
