"""The adapter's multimodal processor against transformers' LlavaProcessor (no engine needed)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.media import gradient_image, video_frames

IMAGES = [
    ("L", 1, 1),
    ("RGB", 20, 300),
    ("RGB", 640, 480),
    ("RGBA", 300, 200),
    ("P", 50, 70),
    ("CMYK", 128, 96),
    ("LA", 33, 17),
    ("RGB", 384, 384),
    ("RGB", 1000, 50),
    ("I;16", 64, 64),
]


@pytest.fixture(scope="module")
def vllm_processor(tiny_checkpoint):
    import model_adapter

    model_adapter.register()
    from vllm.config import ModelConfig
    from vllm.multimodal import MULTIMODAL_REGISTRY

    config = ModelConfig(
        model=str(tiny_checkpoint),
        hf_overrides=model_adapter.hf_overrides(),
        dtype="float32",
        max_model_len=16384,
        limit_mm_per_prompt={"image": len(IMAGES), "video": 2},
    )
    return MULTIMODAL_REGISTRY.create_processor(config)


def _images():
    out = []
    for i, (mode, w, h) in enumerate(IMAGES):
        if mode == "I;16":
            arr = (np.arange(w * h, dtype=np.uint16).reshape(h, w) * 16).astype(np.uint16)
            from PIL import Image

            out.append(Image.fromarray(arr))
        else:
            out.append(gradient_image(w, h, seed=i, mode=mode))
    return out


def _on_white(image):
    from PIL import Image

    if image.mode != "RGBA":
        return image
    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, image).convert("RGB")


def _kwargs_tensors(mm_kwargs, modality, key):
    return [item[key].data for item in mm_kwargs[modality]]


def test_pixel_values_and_prompt_ids_match_transformers(vllm_processor, hf_reference):
    _, hf_processor = hf_reference
    images = _images()
    text = "<|im_start|>user\n" + "".join(f"picture {i}: <image>\n" for i in range(len(images)))
    text += "What differs?<|im_end|>\n<|im_start|>assistant\n"

    # vLLM's data parser composites transparency on white (as our server's media loader does);
    # transformers' convert_rgb drops the alpha channel instead. Give the reference the same pixels.
    expected = hf_processor(text=text, images=[_on_white(im) for im in images], return_tensors="np")
    tokenizer = vllm_processor.info.get_tokenizer()
    items = vllm_processor.info.parse_mm_data({"image": images})
    out = vllm_processor(tokenizer.encode(text), items)

    ours = np.stack([t.numpy() for t in _kwargs_tensors(out["mm_kwargs"], "image", "pixel_values")])
    assert ours.shape == (len(images), 3, 384, 384)
    assert ours.dtype == np.float32
    assert np.abs(ours - expected["pixel_values"]).max() <= 1e-5
    assert out["prompt_token_ids"] == expected["input_ids"][0].tolist()
    assert [r.length for r in out["mm_placeholders"]["image"]] == [729] * len(images)


def test_video_expands_like_consecutive_images(vllm_processor, hf_reference):
    _, hf_processor = hf_reference
    frames = video_frames(4)
    tokenizer = vllm_processor.info.get_tokenizer()
    prompt = "<|im_start|>user\nWatch<video>\nthen say what happens.<|im_end|>\n<|im_start|>assistant\n"
    items = vllm_processor.info.parse_mm_data({"video": [frames]})
    out = vllm_processor(tokenizer.encode(prompt), items)

    as_images = prompt.replace("<video>", "<image>" * 4)
    from PIL import Image

    expected = hf_processor(text=as_images, images=[Image.fromarray(f) for f in frames], return_tensors="np")
    assert out["prompt_token_ids"] == expected["input_ids"][0].tolist()
    (placeholder,) = out["mm_placeholders"]["video"]
    assert placeholder.length == 4 * 729
    (pixels,) = _kwargs_tensors(out["mm_kwargs"], "video", "pixel_values_videos")
    assert np.abs(pixels.numpy() - expected["pixel_values"]).max() <= 1e-5


def test_video_next_to_images_keeps_item_order(vllm_processor):
    """An image, a video and an image with no text between: each placeholder binds to its item."""
    tokenizer = vllm_processor.info.get_tokenizer()
    prompt = "<|im_start|>user\n<image><video><image>\nDescribe.<|im_end|>\n"
    images = [gradient_image(40, 30, 1), gradient_image(30, 40, 2)]
    items = vllm_processor.info.parse_mm_data({"image": images, "video": [video_frames(3)]})
    out = vllm_processor(tokenizer.encode(prompt), items)
    image_ranges = out["mm_placeholders"]["image"]
    (video_range,) = out["mm_placeholders"]["video"]
    assert [r.length for r in image_ranges] == [729, 729]
    assert video_range.length == 3 * 729
    assert image_ranges[0].offset + 729 == video_range.offset
    assert video_range.offset + 3 * 729 == image_ranges[1].offset
