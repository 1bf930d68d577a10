"""Message builders: turn what is on disk or in memory into the server's content parts.

>>> user("Compare", image("a.png"), video("clip.mp4", num_frames=8),
...      scene(["v1.png", "v2.png"], labels=["front", "back"]), "what changed?")
{'role': 'user', 'content': [{'type': 'text', 'text': 'Compare'}, {'type': 'image_url', ...}, ...]}

Parts keep the order they are given in. Local media (paths, bytes, binary file objects, Pillow images)
are sent inline as ``data:`` URLs whose media type is detected from the content (magic bytes), never
from the file extension; ``http(s)://``, ``data:`` and ``file://`` strings are passed through as URLs
(the server fetches them; ``file://`` only below its allowed media directory).

Text and image parts are OpenAI's (``{"type": "text", ...}``, ``{"type": "image_url", ...}``); videos and
scenes are this server's (:mod:`llava_interleave_client.types`). Messages are typed as openai's message
params, so ``client.chat.completions.create(messages=[user(...)])`` type-checks; openai sends the video and
scene parts inside them unchanged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionContentPartImageParam,
    ChatCompletionContentPartTextParam,
    ChatCompletionMessageParam,
    ChatCompletionSystemMessageParam,
    ChatCompletionUserMessageParam,
)

from ._media import SNIFF_BYTES, MediaError, is_pil_image, is_url, media_kind, media_url, sniff_media_type
from .types import ContentPart, ScenePart, SceneViews, VideoPart, VideoURL

__all__ = ["text", "image", "video", "scene", "user", "system", "assistant", "message"]

# A path (str or PathLike), bytes / bytearray / memoryview, a binary file object, a PIL image or a URL string.
ImageSource = Any
VideoSource = Any
Part = str | ContentPart | Sequence[Any]


def text(value: str) -> ChatCompletionContentPartTextParam:
    """A text part: ``{"type": "text", "text": value}``."""
    if not isinstance(value, str):
        raise TypeError(f"text part must be str, not {type(value).__name__}")
    return {"type": "text", "text": value}


def image(source: ImageSource) -> ChatCompletionContentPartImageParam:
    """An image part.

    Args:
        source: a file path (``str`` / ``os.PathLike``), image bytes, a binary file object, a Pillow
            image (sent as lossless PNG; Pillow is optional and only used when you pass one), or a URL
            string (``http(s)://``, ``data:``, ``file://``) that is passed through unchanged.

    Returns:
        ``{"type": "image_url", "image_url": {"url": ...}}`` with a ``data:`` URL for local content.

    Raises:
        FileNotFoundError: the path does not exist.
        MediaError: empty content, or content that is not PNG / JPEG / GIF / WEBP / BMP / TIFF.
    """
    return {"type": "image_url", "image_url": {"url": media_url(source, "image")}}


def video(source: VideoSource, *, num_frames: int | None = None, fps: float | None = None) -> VideoPart:
    """A video part; the server samples frames from it, each frame costing one image (729 tokens).

    Args:
        source: a file path, video bytes, a binary file object, or a URL string (passed through).
        num_frames: how many frames to sample uniformly over the duration (server default 16).
        fps: sample at this rate (frames per second) instead; short clips give the frames they have.

    Returns:
        ``{"type": "video_url", "video_url": {"url": ..., "num_frames": ..., "fps": ...}}`` without the
        fields that are ``None``.

    Raises:
        FileNotFoundError: the path does not exist.
        MediaError: content that is not MP4 / MOV / WebM / MKV / AVI / MPEG-TS.
        ValueError: ``num_frames`` < 1 or ``fps`` <= 0.
    """
    if num_frames is not None and (
        isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1
    ):
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    body: VideoURL = {"url": media_url(source, "video")}
    if num_frames is not None:
        body["num_frames"] = num_frames
    if fps is not None:
        body["fps"] = float(fps)
    return {"type": "video_url", "video_url": body}


def _natural_key(path: Path) -> list[Any]:
    """Sort key so that ``view2.png`` comes before ``view10.png``."""
    return [
        (0, int(tok), "") if tok.isdigit() else (1, 0, tok.lower()) for tok in re.split(r"(\d+)", path.name)
    ]


def _scene_folder(folder: Path) -> list[Path]:
    """The image files directly inside ``folder`` (content-detected, hidden files skipped), sorted."""
    files = []
    for entry in folder.iterdir():
        if entry.name.startswith(".") or not entry.is_file():
            continue
        with open(entry, "rb") as fh:
            if media_kind(sniff_media_type(fh.read(SNIFF_BYTES))) == "image":
                files.append(entry)
    if not files:
        raise MediaError(f"scene folder {str(folder)!r} holds no image files")
    return sorted(files, key=_natural_key)


def scene(
    views: str | os.PathLike[str] | Sequence[ImageSource], labels: Sequence[str] | None = None
) -> ScenePart:
    """A 3D scene part: several views of one scene, in order, each view one image (729 tokens).

    Args:
        views: a folder (every image file directly inside it, detected by content, hidden files skipped,
            in natural name order so ``view2`` precedes ``view10``), or a sequence of image sources (each
            anything :func:`image` accepts).
        labels: optional names of the views (e.g. camera names), one per view, in the same order; the
            server writes each label as text before its view.

    Returns:
        ``{"type": "scene_views", "scene_views": {"urls": [...], "labels": [...]}}`` (no ``labels`` key
        when none are given).

    Raises:
        FileNotFoundError / NotADirectoryError: a folder path that does not exist.
        MediaError: no views, a view that is not an image, or ``len(labels) != len(views)``.
    """
    if isinstance(views, (str, os.PathLike)) and not is_url(views):
        folder = Path(views)
        if not folder.exists():
            raise FileNotFoundError(f"scene folder {str(folder)!r} does not exist")
        if not folder.is_dir():
            raise NotADirectoryError(
                f"scene(views=...) takes a folder or a list of views, got file {str(folder)!r}"
            )
        view_list: list[Any] = list(_scene_folder(folder))
    elif isinstance(views, (str, bytes, bytearray)) or is_pil_image(views):
        raise MediaError(
            "scene(views=...) takes a folder or a sequence of views; wrap a single view in a list"
        )
    else:
        view_list = list(cast(Sequence[ImageSource], views))
    if not view_list:
        raise MediaError("a scene needs at least one view")
    urls = [media_url(v, "image") for v in view_list]
    body: SceneViews = {"urls": urls}
    if labels is not None:
        if isinstance(labels, str):
            raise MediaError("labels must be a sequence of strings, one per view, not a single string")
        names = [str(label) for label in labels]
        if len(names) != len(urls):
            raise MediaError(f"{len(names)} labels for {len(urls)} views; give one label per view")
        body["labels"] = names
    return {"type": "scene_views", "scene_views": body}


def _parts(items: Sequence[Part]) -> list[ContentPart]:
    parts: list[ContentPart] = []
    for item in items:
        if isinstance(item, str):
            parts.append(text(item))
        elif isinstance(item, dict) and isinstance(item.get("type"), str):
            parts.append(item)
        elif isinstance(item, (list, tuple)):
            parts.extend(_parts(item))
        else:
            raise TypeError(
                f"message parts must be str or parts built with text()/image()/video()/scene(), "
                f"not {type(item).__name__}; wrap media in image(...) or video(...)"
            )
    return parts


def message(role: str, *parts: Part) -> ChatCompletionMessageParam:
    """A message ``{"role": role, "content": [...]}`` from strings (text parts) and built parts, in order.

    Lists / tuples of parts are flattened in place.

    Raises:
        TypeError: a part that is neither a string nor a built part dict.
    """
    return cast(ChatCompletionMessageParam, {"role": role, "content": _parts(parts)})


def user(*parts: Part) -> ChatCompletionUserMessageParam:
    """A user message mixing text and media in the order given.

    ``user("Compare", image("a.png"), video("clip.mp4", num_frames=8), "what changed?")``

    Raises:
        TypeError: a part that is neither a string nor a part built by :func:`image` / :func:`video` /
            :func:`scene` / :func:`text` (pass a path through ``image(...)``, not bare).
    """
    return cast(ChatCompletionUserMessageParam, message("user", *parts))


def _text_only(role: str, parts: Sequence[Part]) -> str:
    built = _parts(parts)
    if any(p["type"] != "text" for p in built):
        raise TypeError(f"{role} messages take text only")
    return "\n".join(p["text"] for p in built if p["type"] == "text")


def system(*parts: str) -> ChatCompletionSystemMessageParam:
    """A system message; text parts are joined with newlines into one string content.

    Raises:
        TypeError: a media part (system messages are text only).
    """
    return {"role": "system", "content": _text_only("system", parts)}


def assistant(*parts: str) -> ChatCompletionAssistantMessageParam:
    """An assistant message (a previous answer, for multi-turn chats); text only, joined with newlines.

    Raises:
        TypeError: a media part.
    """
    return {"role": "assistant", "content": _text_only("assistant", parts)}
