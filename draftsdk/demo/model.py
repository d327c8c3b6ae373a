"""The digits-world diffusion model: a tiny Stable Diffusion pipeline built from configs.

Shapes: images ``(B, 3, 16, 16)`` in [0, 1] (grey repeated), latents ``(B, 4, 8, 8)`` (two autoencoder
levels, ``vae_scale_factor`` 2). 16 px keeps the 8x8 strokes smooth while the latent grid stays 8x8, which
is what makes a 20-step, classifier-free-guided pipeline call for 8 images take 0.26 s on 2 CPU cores
(a UNet call at batch 16: 12 ms). The components mirror SD 1.x so the same DRaFT code runs on both:

- UNet: ``UNet2DConditionModel``, channels (32, 64), one ResNet per level; the 8x8 level is convolutional
  and the 4x4 level, the mid block and the first up level carry transformer blocks whose self- and
  cross-attention have ``to_q``/``to_k``/``to_v``/``to_out.0`` (the LoRA targets); 1.0 M parameters;
- autoencoder: ``AutoencoderKL`` with channels (16, 32), no mid-block attention (nothing to attend over at
  16 px); ``scaling_factor`` is set by pretraining to 1 / std of the training latents; 0.16 M parameters;
- text: ``CLIPTextModel`` (2 layers, width 64) with a ``CLIPTokenizer`` built offline from open_clip's BPE
  file, truncated to 2000 tokens (``"a handwritten digit 7"`` is 10 tokens), ``model_max_length`` 16;
  0.2 M parameters, most of them token embeddings;
- scheduler: ``DDIMScheduler`` on DDPM's linear beta schedule (1e-4..0.02, 1000 steps), epsilon prediction,
  ``clip_sample=False``, ``set_alpha_to_one=False``, ``steps_offset=1`` and ``timestep_spacing="trailing"``
  (T=20 gives t = 999, 949, ..., 49). With SD's "leading" spacing the last DDIM step would run at t=1,
  where the noise std is 0.015 and the step barely changes the image, so a gradient through the last
  step only (DRaFT-1, DRaFT-LV) would carry almost no signal (in a trial, DRaFT-LV raised the target
  probability to 0.06 in 100 steps with leading spacing, to 0.85 with trailing); trailing spacing also
  starts at pure noise.

Prompts: ``prompt_for(d)`` gives ``"a handwritten digit d"``; pretraining also uses ``"a digit d"`` and
``"the number d"``, and the empty prompt (10 %) for classifier-free guidance.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

LATENT_CHANNELS = 4
LATENT_SIZE = 8
IMAGE_SIZE = 16
VOCAB_SIZE = 2000
MAX_TOKENS = 16
TEXT_WIDTH = 64
PROMPT_TEMPLATES = ("a handwritten digit {}", "a digit {}", "the number {}")
DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 3.0


def prompt_for(digit: int) -> str:
    """The canonical prompt for ``digit``: ``"a handwritten digit 7"``."""
    return PROMPT_TEMPLATES[0].format(digit)


def weights_dir() -> Path:
    """The folder holding the shipped weights of the digits world."""
    return Path(__file__).resolve().parent / "weights"


def pipeline_path() -> Path:
    """The shipped ``StableDiffusionPipeline`` folder (``save_pretrained`` layout, safetensors)."""
    return weights_dir() / "pipeline"


def make_tokenizer() -> CLIPTokenizer:
    """CLIP's BPE tokenizer, truncated to ``VOCAB_SIZE`` tokens, built offline from open_clip's vocab file.

    Ids below the cut are identical to OpenAI CLIP's (bytes, then merges in rank order); the two special
    tokens take the last two ids.
    """
    import open_clip
    from open_clip.tokenizer import bytes_to_unicode
    from transformers import CLIPTokenizer

    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(bpe).read().decode("utf-8").split("\n")
    byte_tokens = list(bytes_to_unicode().values())
    n_merges = VOCAB_SIZE - 2 * len(byte_tokens) - 2
    merges = [tuple(line.split()) for line in lines[1 : 1 + n_merges]]
    tokens = byte_tokens + [t + "</w>" for t in byte_tokens] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    # transformers annotates merges as list[str]; tokenizers' BPE takes (left, right) pairs
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_TOKENS)  # type: ignore[arg-type]


def build_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    """A 2-layer CLIP text transformer of width ``TEXT_WIDTH`` (random weights)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_WIDTH,
        intermediate_size=2 * TEXT_WIDTH,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        projection_dim=TEXT_WIDTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def build_unet() -> UNet2DConditionModel:
    """The denoiser on 8x8x4 latents (random weights); see the module docstring for the layout."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=4,  # diffusers reads this as the number of heads: 4 heads of 16 channels
        norm_num_groups=8,
    )


def build_vae() -> AutoencoderKL:
    """The 16x16x3 <-> 8x8x4 KL autoencoder (random weights)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=LATENT_CHANNELS,
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=IMAGE_SIZE,
        mid_block_add_attention=False,
    )


def build_scheduler() -> DDIMScheduler:
    """DDIM on DDPM's linear schedule, epsilon prediction, SD-style offsets."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear",
        prediction_type="epsilon",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="trailing",
    )


def assemble_pipeline(
    unet: UNet2DConditionModel, vae: AutoencoderKL, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer
) -> StableDiffusionPipeline:
    """Wrap the components as a ``StableDiffusionPipeline`` (no safety checker) with a fresh DDIM scheduler."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        # diffusers' annotations: scheduler as the KarrasDiffusionSchedulers enum (it takes a scheduler
        # instance), safety_checker and feature_extractor without None (it takes None with requires_safety_checker=False)
        scheduler=build_scheduler(),  # type: ignore[arg-type]
        safety_checker=None,  # type: ignore[arg-type]
        feature_extractor=None,  # type: ignore[arg-type]
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_pipeline(device: str = "cpu", path: str | Path | None = None) -> StableDiffusionPipeline:
    """Load the shipped (or the given) digits pipeline with ``StableDiffusionPipeline.from_pretrained``."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(path or pipeline_path()))
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
