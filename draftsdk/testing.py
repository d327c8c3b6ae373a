"""Test helpers for reward-plugin authors (also a pytest plugin, loaded automatically).

- [check_reward][draftsdk.testing.check_reward] runs the reward contract: output shape, finite
  values, gradient to the pixels, determinism and batch independence.
- [tiny_pipeline][draftsdk.testing.tiny_pipeline] and
  [tiny_sdxl_pipeline][draftsdk.testing.tiny_sdxl_pipeline] build random-weight SD- and SDXL-shaped
  pipelines from configs in a fraction of a second, for offline tests of code that needs one.
- [smooth_image][draftsdk.testing.smooth_image] makes a photo-like test image as both a PIL image
  and the matching tensor, for parity tests against a reference's PIL preprocessing.

Installing draftsdk also registers a pytest plugin ([draftsdk.pytest_plugin][]) with the fixtures
``check_reward``, ``tiny_sd_path`` and ``smooth_image``.

Examples:
    >>> from draftsdk.testing import check_reward
    >>> from draftsdk.default_plugins.basic import Brightness
    >>> report = check_reward(Brightness())
    >>> report["shape"]
    [2]
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import RewardContractError

__all__ = [
    "check_reward",
    "tiny_clip_tokenizer",
    "tiny_scheduler",
    "tiny_pipeline",
    "tiny_sdxl_pipeline",
    "tiny_sd3_pipeline",
    "tiny_flux_pipeline",
    "tiny_qwen_tokenizer",
    "tiny_flux2_klein_pipeline",
    "tiny_qwenimage_pipeline",
    "save_tiny_pipeline",
    "smooth_image",
]


def _fail(reward: Any, problem: str) -> RewardContractError:
    return RewardContractError(f"reward '{getattr(reward, 'name', reward)}': {problem}")


def check_reward(
    reward: Any,
    *,
    batch_size: int = 2,
    image_size: int = 32,
    prompts: Sequence[str] | None = None,
    seed: int = 0,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    check_input_validation: bool = False,
    device: str = "cpu",
) -> dict[str, Any]:
    """Check that ``reward`` honours the Reward contract; raise RewardContractError if not.

    Args:
        reward: the reward instance.
        batch_size: how many random images to score (uniform noise in [0, 1]); at least 2.
        image_size: their height and width.
        prompts: one per image (default: simple captions).
        seed: seed of the random images.
        atol: absolute tolerance of the determinism and batch-independence comparisons.
        rtol: relative tolerance of the same comparisons.
        check_input_validation: also require a ValueError for 0..255 images and for a
            prompt-count mismatch (what draftsdk's own plugins promise).
        device: where to put the images.

    Returns:
        a small report: the output shape, the scores, the gradient norm (when differentiable).
    """
    import torch

    from .rewards import Reward

    if not isinstance(reward, Reward):
        raise _fail(reward, "lacks `name`, `differentiable` or `__call__(images, prompts)`")
    if not isinstance(reward.name, str) or not isinstance(reward.differentiable, bool):
        raise _fail(reward, "`name` must be a str and `differentiable` a bool")
    if batch_size < 2:
        raise ValueError("check_reward: batch_size must be >= 2 to test batch independence")
    prompts = list(prompts) if prompts is not None else [f"a photo of thing {i}" for i in range(batch_size)]
    if len(prompts) != batch_size:
        raise ValueError(f"check_reward: got {len(prompts)} prompts for batch_size={batch_size}")
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(batch_size, 3, image_size, image_size, generator=gen).to(device)

    with torch.no_grad():
        first = reward(images, prompts)
        second = reward(images, prompts)
        singles = [reward(images[i : i + 1], prompts[i : i + 1]) for i in range(batch_size)]
    if not isinstance(first, torch.Tensor):
        raise _fail(reward, f"returned {type(first).__name__}; expected a Tensor")
    if tuple(first.shape) != (batch_size,):
        raise _fail(reward, f"returned shape {tuple(first.shape)}; expected ({batch_size},)")
    if first.device != images.device:  # the device contract: scores come back where the images are
        raise _fail(reward, f"returned scores on {first.device} for images on {images.device}; return them on images.device")
    if not first.is_floating_point() or not torch.isfinite(first).all():
        raise _fail(reward, f"returned non-finite or non-float values {first.tolist()}")
    if not torch.allclose(first, second, atol=atol, rtol=rtol):
        raise _fail(reward, f"is not deterministic: {first.tolist()} then {second.tolist()} (eval mode? dropout?)")
    joined = torch.cat([s.reshape(-1) for s in singles])
    if not torch.allclose(first, joined, atol=atol, rtol=rtol):
        raise _fail(
            reward,
            f"depends on the rest of the batch: batch {first.tolist()} vs one-by-one {joined.tolist()} "
            "(score each image with its own prompt: take the diagonal)",
        )
    report: dict[str, Any] = {"shape": list(first.shape), "scores": first.tolist(), "grad_norm": None}

    if reward.differentiable:
        pixels = images.clone().requires_grad_(True)
        out = reward(pixels, prompts)
        if out.grad_fn is None:
            raise _fail(reward, "says differentiable=True but its output has no grad_fn")
        (grad,) = torch.autograd.grad(out.sum(), pixels)
        if not torch.isfinite(grad).all():
            raise _fail(reward, "gradient w.r.t. the images has non-finite values")
        norm = float(grad.norm())
        if norm == 0.0:
            raise _fail(reward, "gradient w.r.t. the images is exactly zero")
        report["grad_norm"] = norm

    if check_input_validation:
        for bad, what in ((images * 255, "0..255 images"), (images[:1], "fewer images than prompts")):
            try:
                reward(bad, prompts)
            except ValueError:
                continue
            raise _fail(reward, f"accepted {what} without a ValueError")
    return report


def _clip_bpe_path() -> Path:
    try:
        import open_clip
    except ImportError as exc:  # pragma: no cover - dev dependency
        raise ImportError("tiny_clip_tokenizer needs open_clip_torch (for its BPE file): pip install open_clip_torch") from exc
    return Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"


def tiny_clip_tokenizer(vocab_size: int = 1000, model_max_length: int = 77) -> Any:
    """A real CLIP BPE tokenizer cut to ``vocab_size`` tokens, built offline from open_clip's file."""
    from transformers import CLIPTokenizer

    # bytes_to_unicode, as in CLIP: printable bytes map to themselves, the rest to code points >= 256.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    byte_chars = [chr(c) for c in cs]
    lines = gzip.open(_clip_bpe_path()).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 1 + vocab_size - 514]]
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    # transformers annotates merges as list[str]; tokenizers' BPE takes (left, right) pairs
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)  # type: ignore[arg-type]


def tiny_scheduler(kind: str = "ddim", prediction_type: str = "epsilon") -> Any:
    """SD's noise schedule (scaled-linear betas 0.00085..0.012) in the scheduler class a folder may name.

    ``kind`` is ``"ddim"``, ``"pndm"`` (what the hub's SD 1.4/1.5 folders ship) or ``"euler"`` (many
    fine-tunes and SDXL).
    """
    from diffusers import DDIMScheduler, EulerDiscreteScheduler, PNDMScheduler

    common = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, prediction_type=prediction_type)
    if kind == "ddim":
        return DDIMScheduler(clip_sample=False, set_alpha_to_one=False, **common)
    if kind == "pndm":  # as the hub's SD 1.5 scheduler_config.json: PNDM has no clip_sample setting
        return PNDMScheduler(skip_prk_steps=True, set_alpha_to_one=False, **common)
    if kind == "euler":  # as SDXL base's scheduler_config.json, which keeps DDIM settings Euler ignores
        extra = {"clip_sample": False, "set_alpha_to_one": False, "skip_prk_steps": True, "sample_max_value": 1.0}
        return EulerDiscreteScheduler.from_config({**common, "timestep_spacing": "leading", "interpolation_type": "linear", **extra})
    raise ValueError(f"unknown scheduler kind {kind!r}; use ddim, pndm or euler")


# What the tiny SD and SDXL UNets share: two levels, the second with cross-attention.
_TINY_UNET: dict[str, Any] = dict(
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
)


def _tiny_vae(sample_size: int) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        sample_size=sample_size * 2,
    )


def _tiny_text_config(tokenizer: Any, width: int) -> dict[str, Any]:
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=32,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def tiny_pipeline(
    seed: int = 0,
    sample_size: int = 8,
    cross_attention_dim: int = 32,
    *,
    scheduler: str = "ddim",
    prediction_type: str = "epsilon",
    linear_projection: bool = False,
) -> Any:
    """A random-weight ``StableDiffusionPipeline`` with SD's structure at toy size (CPU, ~0.1 s).

    ``sample_size`` is the latent size; images are twice as large (two VAE levels). ``scheduler``
    picks the class the folder names ([tiny_scheduler][draftsdk.testing.tiny_scheduler]); SD 2.x
    is ``prediction_type="v_prediction", linear_projection=True``.
    """
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        **_TINY_UNET,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=32,
        use_linear_projection=linear_projection,
    )
    vae = _tiny_vae(sample_size)
    tokenizer = tiny_clip_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(**_tiny_text_config(tokenizer, cross_attention_dim)))
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=tiny_scheduler(scheduler, prediction_type),
        # diffusers annotates both without None; it takes None with requires_safety_checker=False
        safety_checker=None,  # type: ignore[arg-type]
        feature_extractor=None,  # type: ignore[arg-type]
        requires_safety_checker=False,
    )


def tiny_sdxl_pipeline(seed: int = 0, sample_size: int = 8, *, scheduler: str = "euler", force_zeros_for_empty_prompt: bool = True) -> Any:
    """A random-weight ``StableDiffusionXLPipeline`` at toy size: two CLIP text encoders (the second
    with a projection), a UNet with ``text_time`` added conditioning and linear projections."""
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        **_TINY_UNET,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + 32,  # six time ids of width 8 + the pooled projection
        cross_attention_dim=64,  # the two encoders' hidden states, concatenated
        norm_num_groups=32,
    )
    vae = _tiny_vae(sample_size)
    tokenizer = tiny_clip_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(**_tiny_text_config(tokenizer, 32)))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**_tiny_text_config(tokenizer, 32)))
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tiny_clip_tokenizer(),
        unet=unet,
        scheduler=tiny_scheduler(scheduler),
        force_zeros_for_empty_prompt=force_zeros_for_empty_prompt,
        add_watermarker=False,
    )


def _tiny_flow_vae(latent_channels: int) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=latent_channels,
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )


def _tiny_t5(tokenizer: Any, width: int) -> Any:
    from transformers import T5Config, T5EncoderModel

    # decoder_start_token_id: a PreTrainedConfig kwarg, absent from T5Config's typed (dataclass) fields
    return T5EncoderModel(
        T5Config(vocab_size=len(tokenizer), d_model=width, d_ff=64, d_kv=8, num_layers=2, num_heads=4,  # type: ignore[call-arg]
                 relative_attention_num_buckets=8, pad_token_id=tokenizer.pad_token_id, decoder_start_token_id=0)
    )


def tiny_sd3_pipeline(seed: int = 0, sample_size: int = 8, *, shift: float = 3.0, t5: bool = True) -> Any:
    """A random-weight ``StableDiffusion3Pipeline`` at toy size: an SD3 MMDiT with two joint blocks,
    two CLIP encoders with projections, a T5 encoder (``t5=False`` leaves it out, as SD3 allows), a
    16-channel VAE with SD3's scaling and shift factors, and a flow-matching scheduler with ``shift``.

    The T5 tokenizer is the tiny CLIP BPE tokenizer cut to 32 tokens (no T5 vocabulary ships offline).
    """
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=sample_size, patch_size=1, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=8,
        num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=64, pooled_projection_dim=64,
    )
    tokenizer = tiny_clip_tokenizer()
    encoders = [CLIPTextModelWithProjection(CLIPTextConfig(**_tiny_text_config(tokenizer, 32))) for _ in range(2)]
    tokenizer_3 = tiny_clip_tokenizer(model_max_length=32) if t5 else None
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=shift),
        vae=_tiny_flow_vae(16),
        text_encoder=encoders[0],
        tokenizer=tokenizer,
        text_encoder_2=encoders[1],
        tokenizer_2=tiny_clip_tokenizer(),
        text_encoder_3=_tiny_t5(tokenizer_3, 64) if t5 else None,  # type: ignore[arg-type]  # None: no T5, as SD3 allows
        tokenizer_3=tokenizer_3,
    )


def tiny_flux_pipeline(seed: int = 0, *, guidance_embeds: bool = True) -> Any:
    """A random-weight ``FluxPipeline`` at toy size (``guidance_embeds=False`` is schnell-shaped): one
    double- and one single-stream block, CLIP + T5 (T5 tokenized by the tiny CLIP BPE tokenizer, 32
    tokens), a 4-channel VAE packed 2x2 into 16-channel tokens, and FLUX's dynamically shifted schedule.
    Its default image is 512 px; sample it at 32x32 (8 image tokens... at toy sizes, pass height/width)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8], guidance_embeds=guidance_embeds,
    )
    tokenizer = tiny_clip_tokenizer()
    tokenizer_2 = tiny_clip_tokenizer(model_max_length=32)
    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096, shift=3.0
    )
    return FluxPipeline(
        transformer=transformer,
        scheduler=scheduler,
        vae=_tiny_flow_vae(4),
        text_encoder=CLIPTextModel(CLIPTextConfig(**_tiny_text_config(tokenizer, 32))),
        tokenizer=tokenizer,
        text_encoder_2=_tiny_t5(tokenizer_2, 32),
        tokenizer_2=tokenizer_2,
    )


# Qwen's chat format (one turn per message; with ``enable_thinking=False`` the assistant turn opens
# with an empty think block, as Qwen3's own template writes it).
_QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)
_QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>",
                        "<|vision_start|>", "<|vision_end|>", "<|image_pad|>")


# Qwen-Image's system prompt: learnt as whole words, so that its template's prefix is about as many
# tokens as with the real tokenizer (the pipeline drops the first 34).
_QWENIMAGE_SYSTEM_PROMPT = ("Describe the image by detailing the color, shape, size, texture, quantity, text, spatial relationships "
                            "of the objects and background:")


def tiny_qwen_tokenizer(vocab_size: int = 480, model_max_length: int = 64) -> Any:
    """A byte-level BPE ``Qwen2TokenizerFast`` (the class Qwen2.5 and Qwen3 use), trained offline in memory.

    The 256 byte tokens, BPE merges learnt from a few captions up to ``vocab_size``, then Qwen's
    special tokens (``<|endoftext|>`` pads, ``<|im_start|>``/``<|im_end|>`` delimit chat turns) and a
    chat template in Qwen's format, so ``apply_chat_template`` works as with the real tokenizers.
    """
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast  # type: ignore[attr-defined]  # transformers 5: a runtime alias of Qwen2Tokenizer

    corpus = ["a red cat", "a dog on a beach", "a photo of a fox", "user assistant system", _QWENIMAGE_SYSTEM_PROMPT] * 4
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(corpus, trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab = dict(model["vocab"])
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split()) for m in model["merges"]]
    for token in _QWEN_SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = Qwen2TokenizerFast(vocab=vocab, merges=merges, model_max_length=model_max_length)
    tokenizer.add_special_tokens({"additional_special_tokens": list(_QWEN_SPECIAL_TOKENS[1:])})
    tokenizer.chat_template = _QWEN_CHAT_TEMPLATE
    return tokenizer


def tiny_flux2_klein_pipeline(seed: int = 0, *, is_distilled: bool = False) -> Any:
    """A random-weight ``Flux2KleinPipeline`` at toy size (``is_distilled=True``: the step-distilled
    kind, no guidance): a FLUX.2 transformer with one double- and one single-stream block, a 27-layer
    Qwen3 of width 16 (the pipeline reads hidden states 9, 18 and 27) with the tiny Qwen tokenizer
    (64 tokens), a 4-channel ``AutoencoderKLFlux2`` (patchified 2x2 into 16 channels) whose batch-norm
    statistics are random, and FLUX.2's dynamically shifted schedule. Sample it at 32x32 or so."""
    import torch
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    tokenizer = tiny_qwen_tokenizer()
    text_encoder = Qwen3ForCausalLM(
        Qwen3Config(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=27, num_attention_heads=2,
                    num_key_value_heads=1, head_dim=8, max_position_embeddings=128, tie_word_embeddings=True,
                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"))
    )
    transformer = Flux2Transformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=3 * 16, timestep_guidance_channels=32, axes_dims_rope=(4, 4, 4, 4), guidance_embeds=False,
    )
    vae = AutoencoderKLFlux2(
        block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1, latent_channels=4, use_quant_conv=False, use_post_quant_conv=False,
    )
    with torch.no_grad():  # the latent statistics the decoder un-normalises with (a real VAE's are not 0 and 1)
        vae.bn.running_mean.copy_(torch.randn(16) * 0.2)
        vae.bn.running_var.copy_(torch.rand(16) + 0.5)
    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096, shift=3.0
    )
    return Flux2KleinPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                              transformer=transformer, is_distilled=is_distilled)


def tiny_qwenimage_pipeline(seed: int = 0) -> Any:
    """A random-weight ``QwenImagePipeline`` at toy size: a Qwen-Image MMDiT with two blocks, a two-layer
    Qwen2.5-VL (with a one-block vision tower it does not use for text) and the tiny Qwen tokenizer, a
    4-channel 3D VAE with one level and its own ``latents_mean``/``latents_std``, and Qwen-Image's
    schedule (dynamic shift, ``shift_terminal`` 0.02). Sample it at 32x32 or so."""
    import torch
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    tokenizer = tiny_qwen_tokenizer()
    token = tokenizer.convert_tokens_to_ids
    text_encoder = Qwen2_5_VLForConditionalGeneration(
        Qwen2_5_VLConfig(
            text_config=dict(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                             num_key_value_heads=1, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
                             bos_token_id=tokenizer.pad_token_id, eos_token_id=token("<|im_end|>"),
                             rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]}),
            vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=16, patch_size=2,
                               spatial_merge_size=1, temporal_patch_size=1),
            image_token_id=token("<|image_pad|>"), video_token_id=token("<|image_pad|>"),
            vision_start_token_id=token("<|vision_start|>"), vision_end_token_id=token("<|vision_end|>"),
        )
    )
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=16, axes_dims_rope=(4, 6, 6),
    )
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, attn_scales=[], temperal_downsample=[False],
                                 latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[1.5, 0.8, 1.2, 2.0])
    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9, base_image_seq_len=256, max_image_seq_len=8192, shift=1.0,
        shift_terminal=0.02, time_shift_type="exponential",
    )
    return QwenImagePipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer)


TINY_BUILDERS: dict[str, Callable[..., Any]] = {"sd": tiny_pipeline, "sdxl": tiny_sdxl_pipeline, "sd3": tiny_sd3_pipeline, "flux": tiny_flux_pipeline,
                 "flux2-klein": tiny_flux2_klein_pipeline, "qwenimage": tiny_qwenimage_pipeline}


def save_tiny_pipeline(path: str | os.PathLike[str], family: str = "sd", **kwargs: Any) -> Path:
    """Build a tiny pipeline of ``family`` (a key of ``TINY_BUILDERS``: ``sd``, ``sdxl``, ``sd3``, ``flux``,
    ``flux2-klein``, ``qwenimage``) and ``save_pretrained`` it to ``path``.

    Keyword arguments go to the builder ([tiny_pipeline][draftsdk.testing.tiny_pipeline],
    [tiny_sdxl_pipeline][draftsdk.testing.tiny_sdxl_pipeline]).
    """
    path = Path(path)
    TINY_BUILDERS[family](**kwargs).save_pretrained(path)
    return path


def smooth_image(height: int, width: int, seed: int = 0) -> tuple[Any, Any]:
    """A photo-like RGB test image: ``(PIL image, float tensor (1, 3, height, width) in [0, 1])``.

    Both hold the same uint8 pixels. The picture is a low-frequency colour field (a 6x6 grid upsampled
    bicubically) plus two milder textures (16 px and 3 px blobs): realistic enough that 8-bit rounding
    in PIL, not aliasing of pure noise, is what separates two preprocessing pipelines, yet fine
    enough that a resize without antialiasing shows.

    Examples:
        >>> pil, tensor = smooth_image(48, 64, seed=1)
        >>> pil.size, tuple(tensor.shape)
        ((64, 48), (1, 3, 48, 64))
        >>> round(float(tensor[0, 0, 0, 0]) * 255) == pil.getpixel((0, 0))[0]
        True
    """
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 6, 6, generator=g)
    field = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    detail = F.interpolate(torch.rand(1, 3, height // 16 + 1, width // 16 + 1, generator=g), size=(height, width), mode="bilinear")
    fine = F.interpolate(torch.rand(1, 3, height // 3 + 1, width // 3 + 1, generator=g), size=(height, width), mode="bilinear")
    img = (0.6 * field + 0.2 * detail + 0.2 * fine).clamp(0, 1)
    array = (img[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    pil = Image.fromarray(array, mode="RGB")
    tensor = torch.from_numpy(array).permute(2, 0, 1).float().div(255).unsqueeze(0)
    return pil, tensor
