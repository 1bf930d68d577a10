"""Type checkers accept our parts inside openai's typed ``create()`` (mypy --strict on user code)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

USER_CODE = """
from llava_interleave_client import AsyncClient, ChatCompletion, Client, image, scene, system, user, video


def ask(client: Client) -> str:
    parts = ("Compare", image("a.png"), video("c.mp4", num_frames=8, fps=2.0),
             scene(["v1.png", "v2.png"], labels=["front", "back"]), "what changed?")
    reply: ChatCompletion = client.with_options(max_retries=0).chat.completions.create(
        model="m", messages=[system("be brief"), user(*parts)], max_tokens=64,
        extra_body={"image_placement": "front"})
    with client.chat.completions.create(model="m", messages=[user("hi")], stream=True) as stream:
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    return (reply.choices[0].message.content or "") + text


async def ask_async(client: AsyncClient) -> int:
    out = await client.chat.completions.create(model="m", messages=[user("x", image(b"..."))])
    return out.usage.prompt_tokens if out.usage else 0
"""


def test_user_code_type_checks_and_wrong_fields_do_not(tmp_path):
    (tmp_path / "good.py").write_text(USER_CODE)
    (tmp_path / "bad.py").write_text(
        'from llava_interleave_client import video\nvideo("a.mp4", num_frames="8")\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "good.py", "bad.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1 and errors[0].startswith("bad.py:2:") and "num_frames" in errors[0], proc.stdout
