"""LLaVA-NeXT-Interleave on vLLM: SigLIP tower + GELU MLP projector + Qwen2 LM, images and videos.

Follows vLLM's ``llava.py`` / ``llava_onevision.py`` (ProcessingInfo / DummyInputsBuilder /
MultiModalProcessor / model class), built only from vLLM layers that load without torchvision:
``SiglipVisionModel``, the registered ``Qwen2ForCausalLM``, ``ColumnParallelLinear`` /
``RowParallelLinear``. vLLM's ``llava.py`` itself is not imported (it pulls in pixtral, which needs
torchvision).

Token layout (reference LLaVA-NeXT-Interleave): an image is 729 ``<image>`` tokens (27 x 27 SigLIP
patches, no CLS, no newline token); a video of T frames is T x 729 ``<image>`` tokens, exactly as the
same T frames given as consecutive images with nothing between them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import Annotated, Any, Literal

import numpy as np
import torch
import torch.nn as nn
from transformers import BatchFeature, LlavaConfig
from vllm.config import VllmConfig
from vllm.config.multimodal import MultiModalDummyOptions
from vllm.inputs import MultiModalDataDict
from vllm.model_executor.layers.activation import get_act_fn
from vllm.model_executor.layers.linear import ColumnParallelLinear, RowParallelLinear
from vllm.model_executor.layers.quantization import QuantizationConfig
from vllm.model_executor.models.interfaces import (
    MultiModalEmbeddings,
    SupportsMultiModal,
    SupportsPP,
)
from vllm.model_executor.models.siglip import SiglipVisionModel
from vllm.model_executor.models.utils import (
    AutoWeightsLoader,
    WeightsMapper,
    init_vllm_registered_model,
    maybe_prefix,
)
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.inputs import MultiModalFieldConfig, MultiModalKwargsItems
from vllm.multimodal.parse import (
    ImageProcessorItems,
    ImageSize,
    MultiModalDataItems,
    VideoProcessorItems,
)
from vllm.multimodal.processing import (
    BaseDummyInputsBuilder,
    BaseMultiModalProcessor,
    BaseProcessingInfo,
    PromptReplacement,
    PromptUpdate,
)
from vllm.sequence import IntermediateTensors
from vllm.utils.tensor_schema import TensorSchema, TensorShape

from . import geometry, preprocess
from .lmms_lab import MODEL_TYPE as LMMS_LAB_MODEL_TYPE
from .weights import (
    KEY_REWRITES,
    canonical_key,
    check_complete,
    is_unused_tensor,
    to_lmms_lab,
    vision_layer_index,
)

IMAGE_PLACEHOLDER = "<image>"
"""Prompt placeholder of one image: the checkpoint's ``<image>`` special token (id 151646). lmms-lab
checkpoints have no such token: there it is text, turned into ``config.image_token_index`` (the last
embedding row, see :mod:`model_adapter.lmms_lab`) by the processor."""
VIDEO_PLACEHOLDER = "<video>"
"""Prompt placeholder of one video. The published tokenizer has no ``<video>`` token, so this is plain
text; the processor finds it in token space (re-encoding it canonically if the tokenizer merged it
with its neighbours) and replaces it by frames x 729 ``<image>`` tokens."""
MAX_FRAMES_PER_VIDEO = 32
"""Upper bound of frames per video used for the engine's memory profiling and encoder budget (the
reference samples 16; vLLM's video loader defaults to 32), unless the engine's
``limit_mm_per_prompt={"video": {"num_frames": F}}`` sets another."""


def _image_side(config: LlavaConfig) -> int:
    """The vision tower's input side in pixels (384)."""
    vision: Any = config.vision_config
    return int(vision.image_size)


class ImagePixelInputs(TensorSchema):
    """Dimensions:
    - bn: batch size x number of images
    - c: channels (3)
    - h, w: height and width in pixels (vision_config.image_size, 384)
    """

    type: Literal["pixel_values"] = "pixel_values"
    pixel_values: Annotated[torch.Tensor, TensorShape("bn", 3, "h", "w")]


class VideoPixelInputs(TensorSchema):
    """Dimensions:
    - nf: total frames of all videos in the batch
    - c: channels (3)
    - h, w: height and width in pixels (vision_config.image_size, 384)
    - bv: number of videos
    """

    type: Literal["pixel_values_videos"] = "pixel_values_videos"
    pixel_values_videos: Annotated[torch.Tensor, TensorShape("nf", 3, "h", "w")]
    video_num_frames: Annotated[torch.Tensor, TensorShape("bv")]


class LlavaInterleaveProcessingInfo(BaseProcessingInfo):
    """Token counts and limits; every count comes from :mod:`model_adapter.geometry`."""

    def get_hf_config(self) -> LlavaConfig:
        return self.ctx.get_hf_config(LlavaConfig)

    def get_supported_mm_limits(self) -> Mapping[str, int | None]:
        return {"image": None, "video": None}

    def get_num_image_tokens(self, *, image_width: int, image_height: int) -> int:
        """Tokens of one image of any size (it is resized to 384x384): 729 for the real config."""
        del image_width, image_height  # every image is resized to the same square
        cfg = self.get_hf_config()
        return geometry.num_image_tokens(
            cfg.vision_config, select_strategy=cfg.vision_feature_select_strategy
        )

    def get_num_video_tokens(self, *, image_width: int, image_height: int, num_frames: int) -> int:
        """Tokens of one video: ``num_frames`` x the tokens of one image."""
        return num_frames * self.get_num_image_tokens(image_width=image_width, image_height=image_height)

    def get_image_size_with_most_features(self) -> ImageSize:
        side = _image_side(self.get_hf_config())
        return ImageSize(width=side, height=side)

    def get_num_frames_with_most_features(self, seq_len: int, mm_counts: Mapping[str, int]) -> int:
        """Frames per video in the worst case that still fits ``seq_len`` with the images."""
        size = self.get_image_size_with_most_features()
        per_frame = self.get_num_image_tokens(image_width=size.width, image_height=size.height)
        num_videos = max(mm_counts.get("video", 0), 1)
        left = seq_len - mm_counts.get("image", 0) * per_frame
        return max(min(left // (per_frame * num_videos), self._max_frames_per_video()), 1)

    def _max_frames_per_video(self) -> int:
        """``MAX_FRAMES_PER_VIDEO``, or the engine's ``limit_mm_per_prompt`` video ``num_frames``."""
        mm_config = self.ctx.get_mm_config()
        options = mm_config.limit_per_prompt.get("video") if mm_config else None
        num_frames = getattr(options, "num_frames", None)
        return num_frames or MAX_FRAMES_PER_VIDEO

    def get_mm_max_tokens_per_item(self, seq_len: int, mm_counts: Mapping[str, int]) -> Mapping[str, int]:
        size = self.get_image_size_with_most_features()
        image = self.get_num_image_tokens(image_width=size.width, image_height=size.height)
        frames = self.get_num_frames_with_most_features(seq_len, mm_counts)
        return {"image": image, "video": frames * image}


class LlavaInterleaveDummyInputsBuilder(BaseDummyInputsBuilder[LlavaInterleaveProcessingInfo]):
    """Worst-case inputs for memory profiling: 384x384 images, videos with the most frames that fit."""

    def get_dummy_text(self, mm_counts: Mapping[str, int]) -> str:
        return IMAGE_PLACEHOLDER * mm_counts.get("image", 0) + VIDEO_PLACEHOLDER * mm_counts.get("video", 0)

    def get_dummy_mm_data(
        self,
        seq_len: int,
        mm_counts: Mapping[str, int],
        mm_options: MultiModalDummyOptions,
    ) -> MultiModalDataDict:
        size = self.info.get_image_size_with_most_features()
        return {
            "image": self._get_dummy_images(
                width=size.width,
                height=size.height,
                num_images=mm_counts.get("image", 0),
                overrides=mm_options.get("image"),
            ),
            "video": self._get_dummy_videos(
                width=size.width,
                height=size.height,
                num_frames=self.info.get_num_frames_with_most_features(seq_len, mm_counts),
                num_videos=mm_counts.get("video", 0),
                overrides=mm_options.get("video"),
            ),
        }


class LlavaInterleaveMultiModalProcessor(BaseMultiModalProcessor[LlavaInterleaveProcessingInfo]):
    """Preprocesses images and video frames (no HF processor call) and expands placeholders.

    ``pixel_values`` (N, 3, 384, 384) and ``pixel_values_videos`` (sum of frames, 3, 384, 384) are
    computed by :mod:`model_adapter.preprocess`, equal to transformers' ``SiglipImageProcessor``.
    """

    def _get_mm_fields_config(
        self,
        hf_inputs: BatchFeature,
        hf_processor_mm_kwargs: Mapping[str, object],
    ) -> Mapping[str, MultiModalFieldConfig]:
        num_frames = hf_inputs.get("video_num_frames", torch.empty(0, dtype=torch.long))
        return dict(
            pixel_values=MultiModalFieldConfig.batched("image"),
            pixel_values_videos=MultiModalFieldConfig.flat_from_sizes("video", num_frames),
            video_num_frames=MultiModalFieldConfig.batched("video", keep_on_cpu=True),
        )

    def _call_hf_processor(
        self,
        hf_data: Mapping[str, object],
        hf_kwargs: Mapping[str, object],
    ) -> BatchFeature:
        size = _image_side(self.info.get_hf_config())
        out: dict[str, torch.Tensor] = {}
        images: Any = hf_data.get("images") or []  # Pillow images (vLLM's parsed image items)
        if images:
            out["pixel_values"] = torch.from_numpy(preprocess.preprocess_images(images, size))
        videos: Any = hf_data.get("videos") or []  # (T, H, W, 3) arrays or lists of frames
        if videos:
            per_video = [preprocess.preprocess_frames(_frames_of(v), size) for v in videos]
            out["pixel_values_videos"] = torch.from_numpy(np.concatenate(per_video))
            out["video_num_frames"] = torch.tensor([len(v) for v in per_video], dtype=torch.long)
        return BatchFeature(out)

    @cached_property
    def _video_target_ids(self) -> list[int]:
        """Token ids of ``<video>`` encoded alone: the canonical video placeholder."""
        tokenizer = self.info.get_tokenizer()
        return tokenizer.encode(VIDEO_PLACEHOLDER, add_special_tokens=False)

    def _get_prompt_updates(
        self,
        mm_items: MultiModalDataItems,
        hf_processor_mm_kwargs: Mapping[str, object],
        out_mm_kwargs: MultiModalKwargsItems,
    ) -> Sequence[PromptUpdate]:
        image_token_id = self._image_token_id

        def image_replacement(item_idx: int) -> list[int]:
            size = mm_items.get_items("image", ImageProcessorItems).get_image_size(item_idx)
            n = self.info.get_num_image_tokens(image_width=size.width, image_height=size.height)
            return [image_token_id] * n

        def video_replacement(item_idx: int) -> list[int]:
            videos = mm_items.get_items("video", VideoProcessorItems)
            size = videos.get_frame_size(item_idx)
            n = self.info.get_num_video_tokens(
                image_width=size.width,
                image_height=size.height,
                num_frames=videos.get_num_frames(item_idx),
            )
            return [image_token_id] * n

        return [
            PromptReplacement(modality="image", target=[image_token_id], replacement=image_replacement),
            PromptReplacement(modality="video", target=self._video_target_ids, replacement=video_replacement),
        ]

    @cached_property
    def _image_token_id(self) -> int:
        """``config.image_token_index``, checked once against the tokenizer.

        Raises:
            ValueError: if the id is an ordinary token of the tokenizer (other than ``<image>``
                itself): image placeholders would collide with text.
        """
        image_id = int(self.info.get_hf_config().image_token_index)
        vocab = self.info.get_tokenizer().get_vocab()
        if vocab.get(IMAGE_PLACEHOLDER) != image_id:
            owner = next((tok for tok, i in vocab.items() if i == image_id), None)
            if owner is not None:
                raise ValueError(
                    f"image placeholder id {image_id} is the token {owner!r} of this checkpoint's "
                    "tokenizer: images would collide with text"
                )
        return image_id

    @cached_property
    def _image_placeholder_is_text(self) -> bool:
        """True when the tokenizer has no ``<image>`` token at the image id (lmms-lab checkpoints):
        ``<image>`` in a text prompt is then plain text, which the processor turns into the id."""
        vocab = self.info.get_tokenizer().get_vocab()
        return vocab.get(IMAGE_PLACEHOLDER) != self._image_token_id

    def _maybe_apply_prompt_updates(self, mm_items, mm_res):
        # A plain-text "<video>" may have been merged with its neighbours by the BPE (for example
        # "\n<" or ">\n"). Re-encode the prompt around each "<video>" so that every video
        # placeholder is the canonical token sequence and matches in token space. vLLM's own
        # fallback (match on decoded text, then search the expanded prompt) cannot tell a video's
        # tokens from adjacent images' tokens, since both are runs of <image> ids.
        # Without an <image> token (lmms-lab), a text prompt's "<image>" becomes the image id the
        # same way (the reference's tokenizer_image_token: split at "<image>", encode the pieces).
        # A prompt that already holds image ids (token prompts, as the server sends) is left as it
        # is, so user text that spells "<image>" stays text.
        counts = mm_items.get_all_counts()
        placeholders: dict[str, list[int]] = {}
        if counts.get("video", 0):
            placeholders[VIDEO_PLACEHOLDER] = self._video_target_ids
        if (
            counts.get("image", 0)
            and self._image_placeholder_is_text
            and self._image_token_id not in mm_res.prompt_ids
        ):
            placeholders[IMAGE_PLACEHOLDER] = [self._image_token_id]
        if placeholders:
            ids = self._canonicalize_placeholders(list(mm_res.prompt_ids), placeholders)
            mm_res = mm_res._replace(prompt_ids=ids)
        return super()._maybe_apply_prompt_updates(mm_items, mm_res)

    def _canonicalize_placeholders(
        self, prompt_ids: list[int], placeholders: Mapping[str, list[int]]
    ) -> list[int]:
        """Re-encode the text runs between image ids that spell a placeholder non-canonically.

        Args:
            prompt_ids: the tokenized prompt.
            placeholders: placeholder text -> its canonical ids (``<video>`` -> ``<video>`` encoded
                alone; ``<image>`` -> ``[image id]`` for a tokenizer without an ``<image>`` token).

        Returns:
            ``prompt_ids`` where every run between image ids whose text holds a placeholder spelled
            otherwise is replaced by its pieces (split at the placeholders) encoded one by one, with
            the placeholders' canonical ids between them; other runs are unchanged.
        """
        tokenizer = self.info.get_tokenizer()
        image_id = self._image_token_id
        splitter = re.compile("(" + "|".join(re.escape(p) for p in placeholders) + ")")
        out: list[int] = []
        run: list[int] = []

        def flush() -> None:
            text = tokenizer.decode(run) if run else ""
            if all(_count_subsequence(run, ids) == text.count(p) for p, ids in placeholders.items()):
                out.extend(run)
            else:
                for piece in splitter.split(text):
                    if piece in placeholders:
                        out.extend(placeholders[piece])
                    elif piece:
                        out.extend(tokenizer.encode(piece, add_special_tokens=False))
            run.clear()

        for token in prompt_ids:
            if token == image_id:
                flush()
                out.append(token)
            else:
                run.append(token)
        flush()
        return out


def _count_subsequence(seq: list[int], sub: list[int]) -> int:
    n, count, i = len(sub), 0, 0
    while i + n <= len(seq):
        if seq[i : i + n] == sub:
            count += 1
            i += n
        else:
            i += 1
    return count


def _frames_of(video: object) -> Any:
    """Frames of a parsed video item: ``(T, H, W, 3)`` array, or a list of Pillow images."""
    if isinstance(video, tuple):  # (frames, metadata) from vLLM's video loaders
        video = video[0]
    if isinstance(video, torch.Tensor):
        video = video.numpy()
    return video


class LlavaInterleaveProjector(nn.Module):
    """Two-layer GELU MLP from SigLIP features to the LM's embeddings (``multi_modal_projector``).

    Input ``(..., vision_hidden)`` (1152 for so400m), output ``(..., text_hidden)``.
    """

    def __init__(
        self,
        vision_hidden_size: int,
        text_hidden_size: int,
        act: str,
        bias: bool,
        quant_config: QuantizationConfig | None = None,
        prefix: str = "",
    ) -> None:
        super().__init__()
        self.linear_1 = ColumnParallelLinear(
            vision_hidden_size,
            text_hidden_size,
            bias=bias,
            quant_config=quant_config,
            prefix=f"{prefix}.linear_1",
        )
        self.act = get_act_fn(act)
        self.linear_2 = RowParallelLinear(
            text_hidden_size,
            text_hidden_size,
            bias=bias,
            quant_config=quant_config,
            prefix=f"{prefix}.linear_2",
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.linear_1(features)
        hidden = self.act(hidden)
        hidden, _ = self.linear_2(hidden)
        return hidden


@MULTIMODAL_REGISTRY.register_processor(
    LlavaInterleaveMultiModalProcessor,
    info=LlavaInterleaveProcessingInfo,
    dummy_inputs=LlavaInterleaveDummyInputsBuilder,
)
class LlavaInterleaveForConditionalGeneration(nn.Module, SupportsMultiModal, SupportsPP):
    """LLaVA-NeXT-Interleave for vLLM (``image`` and ``video`` modalities).

    Vision features are the last SigLIP layer's output without the post-layernorm
    (``vision_feature_layer: -1``, strategy ``full``), 729 tokens per image, projected by the MLP.
    """

    language_model: Any
    """vLLM's Qwen2 causal LM (``init_vllm_registered_model``)."""

    packed_modules_mapping = {
        "qkv_proj": ["q_proj", "k_proj", "v_proj"],
        "gate_up_proj": ["gate_proj", "up_proj"],
    }

    hf_to_vllm_mapper = WeightsMapper(orig_to_new_regex={re.compile(k): v for k, v in KEY_REWRITES.items()})

    @classmethod
    def get_placeholder_str(cls, modality: str, i: int) -> str | None:
        if modality.startswith("image"):
            return IMAGE_PLACEHOLDER
        if modality.startswith("video"):
            return VIDEO_PLACEHOLDER
        raise ValueError(f"unsupported modality {modality!r}: only image and video")

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__()
        config = vllm_config.model_config.hf_config
        quant_config = vllm_config.quant_config
        self.config = config

        if config.vision_feature_layer != -1 or config.vision_feature_select_strategy != "full":
            raise ValueError(
                "LLaVA-Interleave checkpoints use vision_feature_layer -1 and strategy 'full'; got "
                f"{config.vision_feature_layer} / {config.vision_feature_select_strategy!r}"
            )
        self.configure_mm_token_handling(
            vocab_size=config.text_config.vocab_size,
            mm_token_ids=[config.image_token_index],
        )

        with self._mark_tower_model(vllm_config, {"image", "video"}):
            self.vision_tower = SiglipVisionModel(
                config.vision_config,
                quant_config=quant_config,
                num_hidden_layers_override=config.vision_config.num_hidden_layers,
                require_post_norm=False,
                prefix=maybe_prefix(prefix, "vision_tower"),
            )
            self.multi_modal_projector = LlavaInterleaveProjector(
                vision_hidden_size=config.vision_config.hidden_size,
                text_hidden_size=config.text_config.hidden_size,
                act=config.projector_hidden_act,
                bias=getattr(config, "multimodal_projector_bias", True),
                quant_config=quant_config,
                prefix=maybe_prefix(prefix, "multi_modal_projector"),
            )

        with self._mark_language_model(vllm_config):
            if not getattr(config.text_config, "architectures", None):
                config.text_config.architectures = ["Qwen2ForCausalLM"]
            self.language_model = init_vllm_registered_model(
                vllm_config=vllm_config,
                hf_config=config.text_config,
                prefix=maybe_prefix(prefix, "language_model"),
            )

        self.make_empty_intermediate_tensors = self.language_model.make_empty_intermediate_tensors

    def _encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(N, 3, 384, 384)`` pixels -> ``(N, 729, text_hidden)`` embeddings."""
        features = self.vision_tower(pixel_values.to(self.vision_tower.dtype))
        return self.multi_modal_projector(features)

    def _parse_image_input(self, kwargs: dict[str, object]) -> ImagePixelInputs | None:
        pixel_values = kwargs.pop("pixel_values", None)
        if pixel_values is None:
            return None
        side = self.config.vision_config.image_size
        return ImagePixelInputs(pixel_values=pixel_values, resolve_bindings={"h": side, "w": side})

    def _parse_video_input(self, kwargs: dict[str, object]) -> VideoPixelInputs | None:
        pixel_values_videos = kwargs.pop("pixel_values_videos", None)
        video_num_frames = kwargs.pop("video_num_frames", None)
        if pixel_values_videos is None:
            return None
        side = self.config.vision_config.image_size
        return VideoPixelInputs(
            pixel_values_videos=pixel_values_videos,
            video_num_frames=video_num_frames,
            resolve_bindings={"h": side, "w": side},
        )

    def embed_multimodal(self, **kwargs: object) -> MultiModalEmbeddings:
        """Embeddings of every image and video item in ``kwargs``, in the order of the kwargs.

        Returns:
            one tensor per item: ``(729, text_hidden)`` for an image, ``(T * 729, text_hidden)``
            for a video of T frames.
        """
        embeddings: list[torch.Tensor] = []
        for key in list(kwargs):
            if key == "pixel_values":
                image_input = self._parse_image_input(kwargs)
                if image_input is not None:
                    embeddings.extend(self._encode_images(image_input.pixel_values).unbind(0))
            elif key == "pixel_values_videos":
                video_input = self._parse_video_input(kwargs)
                if video_input is not None:
                    per_frame = self._encode_images(video_input.pixel_values_videos)
                    sizes = [int(n) for n in video_input.video_num_frames.tolist()]
                    for frames in per_frame.split(sizes):
                        embeddings.append(frames.reshape(-1, frames.shape[-1]))
        return embeddings

    def forward(
        self,
        input_ids: torch.Tensor | None,
        positions: torch.Tensor,
        intermediate_tensors: IntermediateTensors | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: object,
    ) -> torch.Tensor | IntermediateTensors:
        if intermediate_tensors is not None:
            inputs_embeds = None
        return self.language_model.model(
            input_ids, positions, intermediate_tensors, inputs_embeds=inputs_embeds
        )

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        return self.language_model.compute_logits(hidden_states)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        """Load any supported key layout (see :mod:`model_adapter.weights`).

        The lmms-lab layout's unused tensors (the SigLIP layer past ``vision_config.num_hidden_layers``
        and ``model.image_newline``) are skipped; nothing else is.

        Raises:
            ValueError: from vLLM's ``AutoWeightsLoader`` naming an unexpected tensor, or ours naming
                a SigLIP layer past the tower's depth.
            MissingWeightsError: naming the first tensor the checkpoint lacks.
        """
        seen: set[str] = set()
        vision_layers = int(self.config.vision_config.num_hidden_layers)
        stored_layers = int(getattr(self.config, "vision_tower_num_layers", None) or vision_layers)
        top_level = {name for name, _ in self.named_children()}

        def record(stream: Iterable[tuple[str, torch.Tensor]]):
            for name, tensor in stream:
                if is_unused_tensor(name, vision_layers=vision_layers, stored_vision_layers=stored_layers):
                    continue  # lmms-lab: the 27th SigLIP layer and image_newline
                canonical = canonical_key(name)
                if canonical.split(".", 1)[0] not in top_level:
                    # vLLM's loader would name only the first part ("model")
                    raise ValueError(
                        f"unexpected tensor {name!r}: not a tensor of a LLaVA-Interleave checkpoint"
                    )
                layer = vision_layer_index(canonical)
                if layer is not None and layer >= stored_layers:
                    # vLLM's SigLIP loader would drop it silently
                    raise ValueError(
                        f"unexpected tensor {name!r}: the vision tower has {stored_layers} layers"
                    )
                seen.add(canonical)
                yield name, tensor

        # SigLIP's own loader drops the unused post_layernorm; Qwen2 handles tied embeddings.
        loader = AutoWeightsLoader(self)
        loaded = loader.load_weights(record(weights), mapper=self.hf_to_vllm_mapper)
        lmms_lab = getattr(self.config, "model_type", None) == LMMS_LAB_MODEL_TYPE
        check_complete(
            seen,
            (name for name, _ in self.named_parameters()),
            name_in_checkpoint=to_lmms_lab if lmms_lab else None,
        )
        return loaded
