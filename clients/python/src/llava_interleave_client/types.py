"""Types of this server's content parts beyond OpenAI's, as TypedDicts (what the builders return).

Responses are openai's own types (``openai.types.chat.ChatCompletion``, ``ChatCompletionChunk``, ...),
re-exported by the package. Wire format of the parts this server adds::

    {"type": "video_url", "video_url": {"url": ..., "num_frames": 16, "fps": 2.0}}   # both optional
    {"type": "scene_views", "scene_views": {"urls": [...], "labels": [...]}}        # labels optional
"""

from __future__ import annotations

from typing import Literal

from openai.types.chat import ChatCompletionContentPartParam
from typing_extensions import Required, TypedDict

__all__ = ["VideoURL", "VideoPart", "SceneViews", "ScenePart", "ContentPart", "ImagePlacement"]

ImagePlacement = Literal["interleaved", "front"]
"""The request field ``image_placement`` (send it in ``extra_body``): ``"interleaved"`` (default: each
image where its part stands) or ``"front"`` (a message's visual parts before its text)."""


class VideoURL(TypedDict, total=False):
    url: Required[str]
    """``http(s)://``, ``file://`` or ``data:video/...;base64,...``."""
    num_frames: int
    """Frames sampled uniformly over the whole clip (server default 16); each costs 729 tokens."""
    fps: float
    """Sample at this rate (frames per second) instead, capped by ``num_frames`` when both are given."""


class VideoPart(TypedDict):
    type: Literal["video_url"]
    video_url: VideoURL


class SceneViews(TypedDict, total=False):
    urls: Required[list[str]]
    """The views of one 3D scene, in order; each view is one image (729 tokens)."""
    labels: list[str]
    """A name per view (e.g. the camera), written as text before its view."""


class ScenePart(TypedDict):
    type: Literal["scene_views"]
    scene_views: SceneViews


ContentPart = ChatCompletionContentPartParam | VideoPart | ScenePart
"""Any content part of a user message: OpenAI's (text, image_url, ...) and this server's."""
