"""``interleave-chat``: ask the server one question with images, videos and 3D scenes from the shell.

::

    interleave-chat "Compare" --image a.png --video clip.mp4 --num-frames 8 \\
        --scene v1.png,v2.png --labels front,back "what changed?"

Content parts are sent in the order they appear on the command line (bare words and ``--text`` are text
parts). ``--num-frames`` / ``--fps`` apply to the ``--video`` just before them (before any ``--video``
they set the default of the following ones); ``--labels`` likewise to the preceding ``--scene``.
The answer is streamed to stdout (``--no-stream`` waits for the whole answer). Errors go to stderr with
exit code 1 (2 for usage errors, 130 when interrupted).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import openai
from openai.types.chat import ChatCompletionMessageParam

from ._client import Client
from .builders import image, scene, system, user, video

__all__ = ["main", "build_parser", "build_messages"]

PROG = "interleave-chat"


class _Part(argparse.Action):
    """Keep the content options in command-line order in ``namespace.parts``: ``--text`` / ``--image`` /
    ``--video`` / ``--scene`` append a part; ``--num-frames`` / ``--fps`` / ``--labels`` set that field of
    the last ``--video`` / ``--scene`` before them (before any ``--video``: of all the later ones)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        parts = namespace.parts = list(namespace.parts)  # never the shared default list
        if self.dest not in ("num_frames", "fps", "labels"):
            later = namespace.video_defaults if self.dest == "video" else {}
            parts.append({"kind": self.dest, "value": values, **later})
            return
        kind = "scene" if self.dest == "labels" else "video"
        if kind == "scene":
            values = [v.strip() for v in values.split(",")]
        target = next((spec for spec in reversed(parts) if spec["kind"] == kind), None)
        if target is None and kind == "scene":
            parser.error("--labels must follow the --scene it names")
        if target is None:
            namespace.video_defaults = {**namespace.video_defaults, self.dest: values}
        else:
            target[self.dest] = values


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``interleave-chat``."""
    p = argparse.ArgumentParser(
        prog=PROG,
        allow_abbrev=False,  # options are matched exactly, so bare words are told apart from them
        description="Chat with a LLaVA-NeXT-Interleave server: text, images, videos and 3D scenes, "
        "interleaved in the order given.",
        epilog='example: interleave-chat "Compare" --image a.png --video clip.mp4 --num-frames 8 '
        '--scene v1.png,v2.png "what changed?"',
    )
    p.set_defaults(parts=[], video_defaults={})
    g = p.add_argument_group("content (sent in command-line order)")
    g.add_argument(
        "--text", "-t", action=_Part, metavar="TEXT", help="a text part (bare words are text parts too)"
    )
    g.add_argument("--image", "-i", action=_Part, metavar="PATH|URL", help="an image file or URL")
    g.add_argument("--video", "-v", action=_Part, metavar="PATH|URL", help="a video file or URL")
    g.add_argument(
        "--num-frames",
        dest="num_frames",
        type=int,
        action=_Part,
        metavar="N",
        help="frames to sample from the preceding --video (server default 16)",
    )
    g.add_argument(
        "--fps",
        type=float,
        action=_Part,
        metavar="F",
        help="sample the preceding --video at F frames per second instead",
    )
    g.add_argument(
        "--scene",
        "-s",
        action=_Part,
        metavar="V1,V2,...|DIR",
        help="a 3D scene: comma-separated views, or a folder of view images (sorted)",
    )
    g.add_argument(
        "--labels",
        action=_Part,
        metavar="L1,L2,...",
        help="labels of the views of the preceding --scene (comma-separated)",
    )
    g.add_argument("--system", metavar="TEXT", help="a system message")

    c = p.add_argument_group("connection and sampling")
    c.add_argument(
        "--base-url", default=None, help="API root (default $INTERLEAVE_BASE_URL or http://127.0.0.1:8000/v1)"
    )
    c.add_argument("--api-key", default=None, help="API key (default $INTERLEAVE_API_KEY)")
    c.add_argument("--model", "-m", default=None, help="model name (default: the first of GET /v1/models)")
    c.add_argument("--max-tokens", type=int, default=None, metavar="N")
    c.add_argument("--temperature", type=float, default=None)
    c.add_argument("--top-p", type=float, default=None)
    c.add_argument("--seed", type=int, default=None)
    c.add_argument("--image-placement", choices=["interleaved", "front"], default=None)
    c.add_argument("--no-stream", dest="stream", action="store_false", help="wait for the whole answer")
    c.add_argument("--usage", action="store_true", help="print token usage to stderr at the end")
    c.add_argument("--timeout", type=float, default=None, metavar="SECONDS")
    c.add_argument("--max-retries", type=int, default=2, metavar="N")
    return p


def _normalize_argv(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """Rewrite bare words as ``--text=WORD`` so that argparse keeps them in their command-line place
    (it would otherwise collect all positionals in one group, losing their order among the options).
    Everything after ``--`` is text."""
    takes_value = {opt for action in parser._actions if action.nargs != 0 for opt in action.option_strings}
    out: list[str] = []
    it = iter(argv)
    for tok in it:
        if tok == "--":
            out.extend(f"--text={rest}" for rest in it)
        elif tok.startswith("-") and tok != "-":
            out.append(tok)
            nxt = next(it, None) if "=" not in tok and tok in takes_value else None
            if nxt is not None:
                out.append(nxt)
        else:
            out.append(f"--text={tok}")
    return out


def build_messages(args: argparse.Namespace) -> list[ChatCompletionMessageParam]:
    """The messages for parsed arguments (reads the media files).

    Raises:
        FileNotFoundError, MediaError: unreadable or unsupported media.
    """
    parts: list[Any] = []
    for spec in args.parts:
        kind, value = spec["kind"], spec["value"]
        if kind == "text":
            parts.append(value)
        elif kind == "image":
            parts.append(image(value))
        elif kind == "video":
            parts.append(video(value, num_frames=spec.get("num_frames"), fps=spec.get("fps")))
        elif kind == "scene":
            views: Any = value
            if "," in value or not os.path.isdir(value):
                views = [v.strip() for v in value.split(",") if v.strip()]
            parts.append(scene(views, labels=spec.get("labels")))
    messages: list[ChatCompletionMessageParam] = [system(args.system)] if args.system else []
    messages.append(user(*parts))
    return messages


def _error_text(exc: BaseException) -> str:
    """``exc`` for humans: the server's own message, status and request id for HTTP errors; the cause
    of a connection error (e.g. a stream cut before ``[DONE]``)."""
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        rid = f", request_id={exc.request_id}" if exc.request_id else ""
        return f"Error code: {exc.status_code} - {body.get('message') or exc.message}{rid}"
    if isinstance(exc, openai.APIConnectionError) and exc.__cause__ is not None:
        return f"{exc} ({exc.__cause__})"
    return str(exc)


def _run(args: argparse.Namespace, out: Any, err: Any) -> None:
    messages = build_messages(args)
    kwargs: dict[str, Any] = {} if args.timeout is None else {"timeout": args.timeout}
    with Client(
        base_url=args.base_url, api_key=args.api_key, max_retries=args.max_retries, **kwargs
    ) as client:
        model = args.model or next((m.id for m in client.models.list()), None)
        if model is None:
            raise openai.OpenAIError("the server lists no models; pass --model")
        sampling = {
            "max_tokens": args.max_tokens,
            "temperature": args.temperature,
            "top_p": args.top_p,
            "seed": args.seed,
        }
        request: dict[str, Any] = {k: v for k, v in sampling.items() if v is not None}
        if args.image_placement:
            request["extra_body"] = {"image_placement": args.image_placement}
        usage = None
        if args.stream:
            if args.usage:
                request["stream_options"] = {"include_usage": True}
            with client.chat.completions.create(
                model=model, messages=messages, stream=True, **request
            ) as stream:
                for chunk in stream:
                    for choice in chunk.choices:
                        out.write(choice.delta.content or "")
                        out.flush()
                    usage = chunk.usage or usage
            out.write("\n")
        else:
            completion = client.chat.completions.create(model=model, messages=messages, **request)
            out.write((completion.choices[0].message.content or "") + "\n")
            usage = completion.usage
        out.flush()
        if args.usage and usage is not None:
            err.write(
                f"usage: prompt {usage.prompt_tokens}, completion {usage.completion_tokens}, "
                f"total {usage.total_tokens} tokens\n"
            )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 error, 2 usage error, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(_normalize_argv(parser, list(sys.argv[1:] if argv is None else argv)))
    if not args.parts:
        parser.error("nothing to send: give a prompt and/or --image / --video / --scene")
    try:
        _run(args, sys.stdout, sys.stderr)
        return 0
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return 130
    except (openai.OpenAIError, OSError, ValueError, TypeError) as exc:
        sys.stdout.flush()
        sys.stderr.write(f"{PROG}: error: {_error_text(exc)}\n")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
