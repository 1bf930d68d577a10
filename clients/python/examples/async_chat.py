"""Async: several requests in flight at once (the server batches them), then one streamed answer.

python examples/async_chat.py
"""

import asyncio

from example_media import make_media

from llava_interleave_client import AsyncClient, ContentPart, image, scene, user, video


async def main() -> None:
    media = make_media()
    questions: dict[str, ContentPart] = {
        "What colour is this?": image(media["image"]),
        "What moves in this clip?": video(media["video"], fps=2),
        "Describe the room.": scene(media["scene"], labels=["front", "left", "back"]),
    }
    async with AsyncClient(max_retries=3) as client:
        model = (await client.models.list()).data[0].id
        replies = await asyncio.gather(
            *(
                client.chat.completions.create(
                    model=model, messages=[user(q, part)], max_tokens=32, temperature=0
                )
                for q, part in questions.items()
            )
        )
        for q, r in zip(questions, replies, strict=True):
            print(
                f"{q} -> {r.choices[0].message.content!r} ({r.usage and r.usage.prompt_tokens} prompt tokens)"
            )

        stream = await client.chat.completions.create(
            model=model,
            messages=[user("Compare", image(media["image"]), image(media["image2"]))],
            max_tokens=32,
            stream=True,
        )
        async with stream:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    print(chunk.choices[0].delta.content, end="", flush=True)
        print()


if __name__ == "__main__":
    asyncio.run(main())
