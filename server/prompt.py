"""Conversation -> prompt token ids + media plan (the token budget: :mod:`server.budget`).

The prompt is the reference ChatML conversation of LLaVA-NeXT-Interleave (template ``qwen_1_5``)::

    <|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\n<image>\\n{text}<|im_end|>\\n<|im_start|>assistant\\n

built as token ids, never by tokenizing one rendered string: the chat markers and the image
placeholders are inserted as ids, and all text between them (user text included) is encoded with
``split_special_tokens=True``, so a user who types ``<image>`` or ``<|im_end|>`` gets plain text that
never binds to media or ends a turn. Text is split only at those inserted ids, which is where the
tokenizer itself splits a rendered string, so for ordinary text the ids equal those of the rendered
string.

Visual parts (one placeholder = one ``<image>`` id; vLLM expands each to 729 tokens):

- ``image_url``: ``<image>\\n``
- ``video_url`` with T sampled frames: ``<image>`` x T (nothing between frames), then ``\\n``
- ``scene_views`` with V views: per view ``{label}: <image>\\n`` (``<image>\\n`` without a label)

``image_placement="interleaved"`` (default) writes each part where it stands; ``"front"`` writes every
visual part of a message first, then the message's text parts concatenated, which for text and images
is exactly what the published checkpoints' ``chat_template.json`` renders.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, cast

from server.errors import invalid_request
from server.schemas import (
    ChatCompletionRequest,
    ImageURLPart,
    SceneViewsPart,
    TextPart,
    VideoURLPart,
)
from server.tools import assistant_tool_calls_text, renders_tools, tool_response_text, tools_system_text

MediaKind = Literal["image", "video", "scene"]


class Tokenizer(Protocol):
    """The part of a transformers tokenizer we use."""

    def encode(self, text: str, **kwargs: Any) -> list[int]: ...

    def decode(self, *args: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class PromptLimits:
    """Per-request media limits (from the settings).

    Attributes:
        max_images: image_url parts per request.
        max_frames: sampled video frames per request (also the max ``num_frames`` of one video).
        max_views: scene views per request.
        default_num_frames: frames of a video part without ``num_frames``.
    """

    max_images: int
    max_frames: int
    max_views: int
    default_num_frames: int = 16


@dataclass(frozen=True)
class MediaRequest:
    """One visual part of the conversation, in prompt order.

    Attributes:
        kind: ``image``, ``video`` or ``scene``.
        message_index, part_index: where the part stands in ``messages``.
        urls: one URL (image, video) or the scene's view URLs.
        labels: scene view labels, or None.
        num_frames: frames to sample (videos), the most the video can contribute.
        fps: sampling rate (videos) or None for uniform sampling.
    """

    kind: MediaKind
    message_index: int
    part_index: int
    urls: tuple[str, ...]
    labels: tuple[str, ...] | None = None
    num_frames: int = 0
    fps: float | None = None

    @property
    def param(self) -> str:
        """The OpenAI ``param`` of this part, e.g. ``messages[0].content[2]``."""
        return f"messages[{self.message_index}].content[{self.part_index}]"

    @property
    def max_items(self) -> int:
        """Images this part can contribute at most (1, num_frames, or the number of views)."""
        if self.kind == "video":
            return self.num_frames
        return len(self.urls)


def plan_media(request: ChatCompletionRequest, limits: PromptLimits) -> list[MediaRequest]:
    """List the visual parts in prompt order and enforce the per-request limits.

    Raises:
        APIError: 400 when a visual part is outside a user message or a limit is exceeded; the
            message names the limit and the ``param`` the part.
    """
    plan: list[MediaRequest] = []
    n_images = n_frames = n_views = 0
    for i, msg in enumerate(request.messages):
        for j, part in enumerate(msg.content):
            if isinstance(part, TextPart):
                continue
            param = f"messages[{i}].content[{j}]"
            if msg.role != "user":
                raise invalid_request(
                    f"{param}: '{part.type}' parts are only allowed in user messages (this one is '{msg.role}').",
                    param=param,
                )
            if isinstance(part, ImageURLPart):
                n_images += 1
                if n_images > limits.max_images:
                    raise invalid_request(
                        f"{param}: too many images: at most {limits.max_images} image_url parts per request.",
                        param=param,
                        code="too_many_images",
                    )
                plan.append(MediaRequest("image", i, j, (part.image_url.url,)))
            elif isinstance(part, VideoURLPart):
                asked = part.video_url.num_frames
                num_frames = limits.default_num_frames if asked is None else asked
                if num_frames < 1:  # the one check of num_frames' range (the schema checks the type)
                    raise invalid_request(
                        f"{param}.video_url.num_frames: must be at least 1, got {num_frames}.",
                        param=f"{param}.video_url.num_frames",
                    )
                if num_frames > limits.max_frames:
                    raise invalid_request(
                        f"{param}.video_url.num_frames: {num_frames} frames requested, the maximum is "
                        f"{limits.max_frames}.",
                        param=f"{param}.video_url.num_frames",
                        code="too_many_frames",
                    )
                n_frames += num_frames
                if n_frames > limits.max_frames:
                    raise invalid_request(
                        f"{param}: too many video frames: the videos of this request ask for {n_frames} "
                        f"frames, at most {limits.max_frames} per request.",
                        param=param,
                        code="too_many_frames",
                    )
                plan.append(
                    MediaRequest(
                        "video", i, j, (part.video_url.url,), num_frames=num_frames, fps=part.video_url.fps
                    )
                )
            elif isinstance(part, SceneViewsPart):
                views = part.scene_views
                n_views += len(views.urls)
                if n_views > limits.max_views:
                    raise invalid_request(
                        f"{param}: too many scene views: {n_views} in this request, at most "
                        f"{limits.max_views} per request.",
                        param=param,
                        code="too_many_views",
                    )
                labels = tuple(views.labels) if views.labels is not None else None
                plan.append(MediaRequest("scene", i, j, tuple(views.urls), labels=labels))
    return plan


@dataclass(frozen=True)
class BuiltPrompt:
    """A prompt ready for the engine.

    Attributes:
        prompt_token_ids: ids with ONE image-token id per image / frame / view.
        num_images: image-token ids in the prompt (images + frames + views).
        text_tokens: ids that are not image placeholders.
        tokens_per_image: visual tokens per image (729 for 384/14).
    """

    prompt_token_ids: list[int]
    num_images: int
    text_tokens: int
    tokens_per_image: int

    @property
    def visual_tokens(self) -> int:
        """Visual tokens after the engine's expansion: tokens_per_image x num_images."""
        return self.num_images * self.tokens_per_image

    @property
    def prompt_tokens(self) -> int:
        """The engine's prompt length: text_tokens + visual_tokens."""
        return self.text_tokens + self.visual_tokens


class PromptBuilder:
    """Renders conversations as token ids (see the module docstring for the exact layout).

    Args:
        tokenizer: the checkpoint's tokenizer (a transformers tokenizer, or anything with ``encode``).
        image_token_id: ``config.image_token_index`` (151646 for the published checkpoints).
        im_start_id, im_end_id: ids of ``<|im_start|>`` and ``<|im_end|>``.
        tokens_per_image: visual tokens per image (729 for 384/14).
        default_system_prompt: added as the first message when the conversation has no system
            message; ``""`` disables it.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        image_token_id: int,
        im_start_id: int,
        im_end_id: int,
        tokens_per_image: int,
        default_system_prompt: str = "",
        image_size: int = 384,
    ) -> None:
        self.tokenizer = tokenizer
        self.image_token_id = image_token_id
        self.im_start_id = im_start_id
        self.im_end_id = im_end_id
        self.tokens_per_image = tokens_per_image
        self.default_system_prompt = default_system_prompt
        self.image_size = image_size
        self._special_ids = {image_token_id, im_start_id, im_end_id}
        self._max_token_bytes: int | None = None

    @property
    def max_token_bytes(self) -> int:
        """Most UTF-8 bytes of text one token can stand for (the longest vocab entry, at least 1).

        Used for a lower bound on a text's token count without tokenizing it: a byte-level BPE token
        of L characters covers L bytes, and its UTF-8 spelling is never shorter, so
        ``ceil(bytes / max_token_bytes)`` tokens is a safe minimum.
        """
        if self._max_token_bytes is None:
            get_vocab = getattr(self.tokenizer, "get_vocab", None)
            vocab = get_vocab() if get_vocab is not None else {}
            longest = max((len(t.encode("utf-8", "replace")) for t in vocab), default=0)
            self._max_token_bytes = max(longest, 1) if vocab else 1 << 30
        return self._max_token_bytes

    def min_text_tokens(self, request: ChatCompletionRequest) -> int:
        """A lower bound of the request's text tokens, computed without tokenizing (see
        :attr:`max_token_bytes`); lets a request whose text alone cannot fit be refused before a
        multi-megabyte body is tokenized."""
        total = len(self.default_system_prompt.encode("utf-8"))
        for msg in request.messages:
            for part in msg.content:
                if isinstance(part, TextPart):
                    total += len(part.text.encode("utf-8"))
                elif isinstance(part, SceneViewsPart) and part.scene_views.labels:
                    total += sum(len((label or "").encode("utf-8")) for label in part.scene_views.labels)
        return -(-total // self.max_token_bytes)

    @classmethod
    def from_pretrained(cls, model_path: str | Path, *, default_system_prompt: str = "") -> PromptBuilder:
        """Load the tokenizer and the visual geometry of a checkpoint folder (no vLLM).

        Takes the llava-hf layout and the lmms-lab one (``model_type: llava_qwen``, translated by
        :func:`model_adapter.lmms_lab.translate_config`; its image id is the last embedding row, which
        its tokenizer has no token for). The folder needs no chat template.

        Raises:
            ValueError: for an lmms-lab config the adapter cannot serve (e.g. an unknown vision tower),
                or an image id that is an ordinary token of the tokenizer.
        """
        from transformers import AutoTokenizer

        from model_adapter.geometry import num_image_tokens
        from model_adapter.lmms_lab import is_lmms_lab_config, translate_config

        path = Path(model_path)
        config = json.loads((path / "config.json").read_text())
        if is_lmms_lab_config(config):
            from model_adapter.config import register_config

            register_config()  # AutoTokenizer reads config.json too
            config = translate_config(config)
        vision = dict(config.get("vision_config") or {})
        vision.setdefault("image_size", 384)
        vision.setdefault("patch_size", 14)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        im_start = cast(int, tokenizer.convert_tokens_to_ids("<|im_start|>"))  # one token -> one id
        im_end = cast(int, tokenizer.convert_tokens_to_ids("<|im_end|>"))
        image_token_id = int(config.get("image_token_index", config.get("image_token_id", 151646)))
        if tokenizer.convert_ids_to_tokens(image_token_id) not in (None, "<image>"):
            raise ValueError(
                f"image placeholder id {image_token_id} is an ordinary token of {path}'s tokenizer"
            )
        return cls(
            tokenizer,
            image_token_id=image_token_id,
            im_start_id=int(im_start),
            im_end_id=int(im_end),
            tokens_per_image=num_image_tokens(vision),
            default_system_prompt=default_system_prompt,
            image_size=int(vision["image_size"]),
        )

    # -- rendering --------------------------------------------------------------------------------

    def render(self, request: ChatCompletionRequest, items_per_media: Sequence[int]) -> list[int | str]:
        """The prompt as segments: ``int`` = a special token id, ``str`` = plain text.

        Args:
            request: a validated request.
            items_per_media: images each visual part contributes, in prompt order (1 per image,
                frames per video, views per scene), i.e. one entry per :func:`plan_media` item.
        """
        segs: list[int | str] = []
        messages = list(request.messages)
        tools_text = tools_system_text(request.tools or []) if renders_tools(request) else None
        has_system = any(m.role in ("system", "developer") for m in messages)
        if not has_system and (self.default_system_prompt or tools_text):
            system = "\n\n".join(t for t in (self.default_system_prompt, tools_text) if t)
            segs += [self.im_start_id, "system\n", system, self.im_end_id, "\n"]
        media_iter = iter(items_per_media)
        front = request.image_placement == "front"
        for k, msg in enumerate(messages):
            if msg.role == "tool":
                # Consecutive tool results share one user turn, as Qwen's template writes them.
                if k == 0 or messages[k - 1].role != "tool":
                    segs += [self.im_start_id, "user"]
                segs.append(tool_response_text(msg))
                if k + 1 == len(messages) or messages[k + 1].role != "tool":
                    segs += [self.im_end_id, "\n"]
                continue
            role = "system" if msg.role == "developer" else msg.role
            segs += [self.im_start_id, f"{role}\n"]
            visual: list[int | str] = []
            text: list[int | str] = []
            for part in msg.content:
                if isinstance(part, TextPart):
                    (text if front else visual).append(part.text)
                    continue
                count = next(media_iter)
                if isinstance(part, ImageURLPart):
                    visual += [self.image_token_id, "\n"]
                elif isinstance(part, VideoURLPart):
                    visual += [self.image_token_id] * count + ["\n"]
                elif isinstance(part, SceneViewsPart):
                    labels = part.scene_views.labels
                    for k2 in range(count):
                        if labels is not None and labels[k2]:
                            visual.append(f"{labels[k2]}: ")
                        visual += [self.image_token_id, "\n"]
            if role == "assistant" and not msg.content and msg.refusal:
                text.append(msg.refusal)
            tail: list[int | str] = []
            if (
                role == "system"
                and tools_text
                and msg is next(m for m in messages if m.role in ("system", "developer"))
            ):
                tail.append("\n\n" + tools_text)
            if role == "assistant" and msg.tool_calls:
                calls = assistant_tool_calls_text(msg)
                tail.append(calls if (visual or text) else calls.removeprefix("\n"))
            segs += visual + text + tail + [self.im_end_id, "\n"]
        segs += [self.im_start_id, "assistant\n"]
        return segs

    def encode_text(self, text: str) -> list[int]:
        """Encode plain text: special-token strings in it stay text (``split_special_tokens``)."""
        if not text:
            return []
        ids = list(self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True))
        if self._special_ids.intersection(ids):  # a tokenizer that ignored split_special_tokens
            raise RuntimeError(
                "tokenizer produced special token ids from plain text; check split_special_tokens"
            )
        return ids

    def build(
        self,
        request: ChatCompletionRequest,
        items_per_media: Sequence[int],
        encoded: dict[str, list[int]] | None = None,
    ) -> BuiltPrompt:
        """Render and encode; see :meth:`render` for ``items_per_media``.

        ``encoded``: a per-request memo of text -> ids. Builds of one request with other image
        counts (the early budget check, then the real one) contain the same text runs, so passing
        the same dict tokenizes each run once.
        """
        memo = {} if encoded is None else encoded

        def encode(text: str) -> list[int]:
            if text not in memo:
                memo[text] = self.encode_text(text)
            return memo[text]

        ids: list[int] = []
        pending: list[str] = []
        for seg in self.render(request, items_per_media):
            if isinstance(seg, str):
                pending.append(seg)
                continue
            ids += encode("".join(pending))
            pending.clear()
            ids.append(seg)
        ids += encode("".join(pending))
        num_images = ids.count(self.image_token_id)
        text_tokens = len(ids) - num_images
        return BuiltPrompt(
            prompt_token_ids=ids,
            num_images=num_images,
            text_tokens=text_tokens,
            tokens_per_image=self.tokens_per_image,
        )
