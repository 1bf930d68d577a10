"""Fixtures shared by the unit tests (their ``unit`` marker comes from tests/conftest.py)."""

from __future__ import annotations

import pytest
from PIL import Image

from harness.media import png_bytes


@pytest.fixture(scope="module")
def small_png() -> bytes:
    """An 8x8 RGB PNG (bytes)."""
    return png_bytes(Image.new("RGB", (8, 8), (10, 200, 30)))
