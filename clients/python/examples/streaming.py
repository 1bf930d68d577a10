"""Stream an answer token by token (the stream closes its connection when done or on error).

    python examples/streaming.py [path/to/image]
"""

import sys

from example_media import make_media

from llava_interleave_client import APIStreamError, Client, image, user


def main() -> None:
    picture = sys.argv[1] if len(sys.argv) > 1 else make_media()["image"]
    with Client() as client:
        model = client.models.list().data[0].id
        stream = client.chat.completions.create(
            model=model,
            messages=[user("Describe this image in detail.", image(picture))],
            max_tokens=128,
            stream=True,
            stream_options={"include_usage": True},
        )
        try:
            with stream:
                for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        print(chunk.choices[0].delta.content, end="", flush=True)
                    if chunk.usage:
                        print(f"\n[{chunk.usage.prompt_tokens} prompt + {chunk.usage.completion_tokens} completion tokens]")
        except APIStreamError as exc:  # the server failed after the stream had started
            raise SystemExit(f"\nstream failed: {exc.message} ({exc.code})")


if __name__ == "__main__":
    main()
