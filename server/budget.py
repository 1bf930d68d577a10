"""The context budget: does a request fit the model's context, and how many tokens may it generate.

The one place for both checks (chat completions run them in this order):

1. :func:`check_lower_bound`, before tokenizing or fetching anything: a lower bound of the text
   tokens (UTF-8 bytes / the longest token's bytes, :meth:`server.prompt.PromptBuilder.min_text_tokens`)
   plus the fewest visual tokens the request can have (a video gives at least one frame), so a
   request that cannot fit is refused before a multi-megabyte body is tokenized or a video decoded;
2. :func:`resolve_max_tokens` on a built prompt (exact token counts; run on the fewest-images
   prompt before any media is loaded, then on the real one).

Every refusal is a 400 ``context_length_exceeded`` naming the numbers; ``param`` is ``max_tokens``
when a smaller ``max_tokens`` would fit, else ``messages``.
"""

from __future__ import annotations

from server.errors import invalid_request
from server.prompt import BuiltPrompt


def check_lower_bound(
    *, min_text_tokens: int, min_visual_tokens: int, requested: int | None, max_model_len: int
) -> None:
    """Refuse a request whose lower-bound size cannot fit: ``min_text_tokens`` + ``min_visual_tokens``
    + ``requested`` max_tokens (1 when None) > ``max_model_len`` (all in tokens).

    Raises:
        APIError: 400 ``context_length_exceeded``.
    """
    needed = min_text_tokens + min_visual_tokens + (requested or 1)
    if needed > max_model_len:
        raise invalid_request(
            f"This request needs at least {needed} tokens: "
            f"at least {min_text_tokens} text tokens + at least {min_visual_tokens} visual tokens + "
            f"{requested or 1} max_tokens, but the model's context holds {max_model_len} tokens.",
            param="max_tokens"
            if requested is not None and min_text_tokens + min_visual_tokens < max_model_len
            else "messages",
            code="context_length_exceeded",
        )


def resolve_max_tokens(
    prompt: BuiltPrompt, requested: int | None, *, max_model_len: int, default_max_tokens: int
) -> int:
    """The request's ``max_tokens``, checked against the context.

    Returns:
        ``requested``, or when None the smaller of ``default_max_tokens`` and what is left of the
        context.

    Raises:
        APIError: 400 naming the numbers when text tokens + visual tokens + max_tokens exceed
            ``max_model_len`` (or the prompt alone leaves no room for one token).
    """
    room = max_model_len - prompt.prompt_tokens
    needed = prompt.prompt_tokens + (requested if requested is not None else 1)
    if needed > max_model_len:
        asked = f"{requested} max_tokens" if requested is not None else "at least 1 generated token"
        raise invalid_request(
            f"This request needs {needed} tokens: {prompt.text_tokens} text tokens + "
            f"{prompt.visual_tokens} visual tokens ({prompt.num_images} images/frames/views x "
            f"{prompt.tokens_per_image}) + {asked}, but the model's context holds {max_model_len} tokens.",
            param="max_tokens" if requested is not None and room >= 1 else "messages",
            code="context_length_exceeded",
        )
    return requested if requested is not None else min(default_max_tokens, room)
