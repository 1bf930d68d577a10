"""One request mixing an image, a video and a 3D scene with text, in that order; then a streamed answer.

make serve                      # in the repo root: the server on 127.0.0.1:8000
python examples/mixed_media.py  # or set INTERLEAVE_BASE_URL / INTERLEAVE_API_KEY
"""

from example_media import make_media

from llava_interleave_client import APIError, Client, image, scene, user, video


def main() -> None:
    media = make_media()
    with Client() as client:  # an openai.OpenAI: every openai argument and method works
        model = client.models.list().data[0].id
        try:
            reply = client.chat.completions.create(
                model=model,
                messages=[
                    user(
                        "Compare this picture",
                        image(media["image"]),
                        "with this clip",
                        video(media["video"], num_frames=4),
                        "and this room",
                        scene(media["scene"], labels=["front", "left", "back"]),
                        "What changed?",
                    )
                ],
                max_tokens=64,
                temperature=0,
                seed=0,
            )
            print(reply.choices[0].message.content)
            # 1 image + 4 frames + 3 views = 8 images of 729 visual tokens each, plus the text
            if reply.usage:
                print(
                    f"prompt tokens: {reply.usage.prompt_tokens}, completion: {reply.usage.completion_tokens}"
                )

            # Streamed token by token; visual parts before the text, as the HF chat template puts them.
            with client.chat.completions.create(
                model=model,
                messages=[user("Describe", image(media["image"]), "in detail.")],
                max_tokens=64,
                stream=True,
                extra_body={"image_placement": "front"},
            ) as stream:
                for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        print(chunk.choices[0].delta.content, end="", flush=True)
            print()
        except APIError as exc:  # an HTTP error, an error event in the stream, a stream cut before [DONE]
            raise SystemExit(f"request failed: {exc}") from exc


if __name__ == "__main__":
    main()
