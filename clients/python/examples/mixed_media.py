"""One request mixing an image, a video and a 3D scene with text, in that order.

    make serve                      # in the repo root: the server on 127.0.0.1:8000
    python examples/mixed_media.py  # or set INTERLEAVE_BASE_URL / INTERLEAVE_API_KEY
"""

from example_media import make_media

from llava_interleave_client import Client, InterleaveError, image, scene, user, video


def main() -> None:
    media = make_media()
    with Client() as client:
        model = client.models.list().data[0].id
        try:
            reply = client.chat.completions.create(
                model=model,
                messages=[
                    user(
                        "Compare this picture", image(media["image"]),
                        "with this clip", video(media["video"], num_frames=8),
                        "and this room", scene(media["scene"], labels=["front", "left", "back"]),
                        "What changed?",
                    )
                ],
                max_tokens=64,
                temperature=0,
                seed=0,
            )
        except InterleaveError as exc:
            raise SystemExit(f"request failed: {exc}")
    print(reply.choices[0].message.content)
    # 1 image + 8 frames + 3 views = 12 images of 729 visual tokens each, plus the text
    print(f"prompt tokens: {reply.usage.prompt_tokens}, completion tokens: {reply.usage.completion_tokens}")


if __name__ == "__main__":
    main()
