"""Shared fixtures: small real media files (Pillow / PyAV) written once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # sdk_stub_server / sdk_media helpers

from sdk_media import make_images, make_videos


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small image per supported format, keyed by format name (png, jpeg, gif, webp, bmp, tiff)."""
    return make_images(tmp_path_factory.mktemp("sdk-images"))


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny clip per supported container (mp4, mov, mkv, webm, avi, ts), keyed by container name."""
    return make_videos(tmp_path_factory.mktemp("sdk-videos"))
