"""Python client SDK for the LLaVA-NeXT-Interleave server (OpenAI-compatible chat completions with
interleaved images, videos and 3D scenes).

::

    from llava_interleave_client import Client, user, image, video, scene

    client = Client()  # http://127.0.0.1:8000/v1 or $INTERLEAVE_BASE_URL; key from $INTERLEAVE_API_KEY
    model = client.models.list().data[0].id
    reply = client.chat.completions.create(
        model=model,
        messages=[user("Compare", image("a.png"), video("clip.mp4", num_frames=8), "what changed?")],
        max_tokens=64,
    )
    print(reply.choices[0].message.content)
"""

from ._base_client import DEFAULT_BASE_URL, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from ._client import AsyncClient, Client
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APIStreamError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InterleaveError,
    InternalServerError,
    MediaError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    ServiceUnavailableError,
    UnprocessableEntityError,
)
from ._media import sniff_media_type
from ._streaming import AsyncStream, Stream
from ._version import __version__
from .builders import assistant, image, message, scene, system, text, user, video
from .types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChoiceDelta,
    ChunkChoice,
    Model,
    ModelList,
    Usage,
)

__all__ = [
    "__version__",
    "Client",
    "AsyncClient",
    "Stream",
    "AsyncStream",
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "DEFAULT_MAX_RETRIES",
    # builders
    "user",
    "system",
    "assistant",
    "message",
    "text",
    "image",
    "video",
    "scene",
    "sniff_media_type",
    # types
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "Choice",
    "ChoiceDelta",
    "ChunkChoice",
    "Usage",
    "Model",
    "ModelList",
    # errors
    "InterleaveError",
    "MediaError",
    "APIError",
    "APIConnectionError",
    "APITimeoutError",
    "APIResponseValidationError",
    "APIStreamError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "RequestTooLargeError",
    "UnprocessableEntityError",
    "RateLimitError",
    "InternalServerError",
    "ServiceUnavailableError",
]
