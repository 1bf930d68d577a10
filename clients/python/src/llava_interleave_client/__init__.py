"""Python client SDK for the LLaVA-NeXT-Interleave server: message builders for images, videos and 3D
scenes interleaved with text (:mod:`.builders`), and ``Client`` / ``AsyncClient``, which are
``openai.OpenAI`` / ``openai.AsyncOpenAI`` with this server's defaults (:mod:`._client`). Errors, streams
and response types are openai's, re-exported here. Usage: ``clients/python/README.md``.
"""

from importlib.metadata import version as _version

# Re-exported names are imported "as themselves" (explicit re-exports for type checkers).
from openai import (
    APIConnectionError as APIConnectionError,
)
from openai import (
    APIError as APIError,
)
from openai import (
    APIResponseValidationError as APIResponseValidationError,
)
from openai import (
    APIStatusError as APIStatusError,
)
from openai import (
    APITimeoutError as APITimeoutError,
)
from openai import (
    AsyncStream as AsyncStream,
)
from openai import (
    AuthenticationError as AuthenticationError,
)
from openai import (
    BadRequestError as BadRequestError,
)
from openai import (
    ConflictError as ConflictError,
)
from openai import (
    InternalServerError as InternalServerError,
)
from openai import (
    NotFoundError as NotFoundError,
)
from openai import (
    OpenAIError as OpenAIError,
)
from openai import (
    PermissionDeniedError as PermissionDeniedError,
)
from openai import (
    RateLimitError as RateLimitError,
)
from openai import (
    Stream as Stream,
)
from openai import (
    UnprocessableEntityError as UnprocessableEntityError,
)
from openai.types import Model as Model
from openai.types.chat import ChatCompletion as ChatCompletion
from openai.types.chat import ChatCompletionChunk as ChatCompletionChunk

from ._client import DEFAULT_BASE_URL as DEFAULT_BASE_URL
from ._client import NO_API_KEY as NO_API_KEY
from ._client import AsyncClient as AsyncClient
from ._client import Client as Client
from ._media import MediaError as MediaError
from ._media import sniff_media_type as sniff_media_type
from .builders import assistant as assistant
from .builders import image as image
from .builders import message as message
from .builders import scene as scene
from .builders import system as system
from .builders import text as text
from .builders import user as user
from .builders import video as video
from .types import ContentPart as ContentPart
from .types import ImagePlacement as ImagePlacement
from .types import ScenePart as ScenePart
from .types import VideoPart as VideoPart

__version__ = _version("llava-interleave-client")
