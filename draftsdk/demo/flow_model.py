"""The digits world's flow model: a tiny Stable Diffusion 3 pipeline (rectified flow, MMDiT transformer).

Same images, latents, prompts and autoencoder as the UNet model in ``draftsdk.demo.model``; what differs is
the denoiser, the text encoders and the sampler, which have SD3's shapes, so the ``sd3`` model family (and
every DRaFT variant on flow models) runs on it. ``draftsdk.load_pipeline("draftsdk:digits-flow")`` loads
the shipped weights (``weights/flow-pipeline/``), trained by ``python -m draftsdk.demo.pretrain_flow``.

- transformer: ``SD3Transformer2DModel`` on the 8x8x4 latents with patch size 2 (16 image tokens of
  2x2x4), 4 joint blocks of width 64 (4 heads of 16), ``joint_attention_dim`` 64,
  ``pooled_projection_dim`` 64; 0.59 M parameters. Its attention layers have ``to_q``/``to_k``/``to_v``/
  ``to_out.0`` and the context stream's ``add_*_proj``/``to_add_out`` (the sd3 family's LoRA targets);
- text: two ``CLIPTextModelWithProjection`` (2 layers, width 32, projection 32) sharing the digits
  tokenizer (16 tokens). As in SD3 the transformer reads the penultimate hidden states of both,
  concatenated (16 tokens x 64 = ``joint_attention_dim``, so nothing is zero-padded), and their pooled
  projections, concatenated (64 = ``pooled_projection_dim``);
- no T5: ``text_encoder_3`` is None, so the pipeline appends zero "T5" tokens to the context. Their number
  is the pipeline's ``max_sequence_length``; diffusers' default is 256, which would make the context 16
  times longer than the prompt and every transformer call about 8 times slower. The pipeline therefore
  ships a ``tokenizer_3`` (the digits tokenizer with ``model_max_length`` = ``T5_TOKENS`` = 1) whose only
  role is to set that length: draftsdk's sd3 family reads it, and the model is trained with exactly one
  zero token (a learned "null" context token). Calling the diffusers pipeline directly, pass
  ``max_sequence_length=T5_TOKENS`` (``pipeline_kwargs()`` gives it);
- autoencoder: the shipped digits ``AutoencoderKL``, a copy with ``shift_factor`` 0.0 in its config (the
  SD3 pipeline decodes ``latents / scaling_factor + shift_factor``); the latents the transformer sees are
  the UNet model's scaled latents (``scaling_factor`` 0.526);
- scheduler: ``FlowMatchEulerDiscreteScheduler`` with ``shift`` 1.0 (``SHIFT``), i.e. sigmas evenly spaced
  from 1 to 1/T and timesteps ``1000 * sigma``. SD3's shift 3.0 (more steps at high noise, for 1024 px)
  buys nothing at 16x16: sampling the shipped weights with shift 1.0 or 3.0, at 20 or 10 steps, the
  classifier and the judge read 200 of 200 samples as the prompted digit either way, and the demo
  reached P(target) 0.918 with shift 1.0 and 0.917 with 3.0. Shift 1.0 keeps the sampler's grid simple
  and the last step (the one DRaFT-1/-LV differentiate) at sigma 1/T.

Defaults for sampling: ``DEFAULT_STEPS`` = 20 Euler steps, ``DEFAULT_GUIDANCE`` = 3.0.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from draftsdk.demo import model as dm

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer

MODEL_NAME = "draftsdk:digits-flow"
PATCH_SIZE = 2
NUM_LAYERS = 4
NUM_HEADS = 4
HEAD_DIM = 16
ENCODER_WIDTH = 32  # per CLIP encoder; two of them give joint_attention_dim and pooled_projection_dim
JOINT_DIM = 2 * ENCODER_WIDTH
T5_TOKENS = 1
SHIFT = 1.0
DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 3.0
FOLDER = "flow-pipeline"


def pipeline_path() -> Path:
    """The shipped ``StableDiffusion3Pipeline`` folder (``save_pretrained`` layout, safetensors)."""
    return dm.weights_dir() / FOLDER


def pipeline_kwargs() -> dict[str, Any]:
    """Keyword arguments a direct diffusers call of the flow pipeline needs: the zero-T5 length it was trained with."""
    return {"max_sequence_length": T5_TOKENS}


def load_tokenizer(max_length: int = dm.MAX_TOKENS) -> CLIPTokenizer:
    """The digits tokenizer, read from the shipped UNet pipeline, with ``model_max_length`` = ``max_length``."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(dm.pipeline_path() / "tokenizer"), model_max_length=max_length)


def build_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModelWithProjection:
    """A 2-layer CLIP text transformer of width ``ENCODER_WIDTH`` with a pooled projection (random weights)."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=ENCODER_WIDTH,
        intermediate_size=2 * ENCODER_WIDTH,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=dm.MAX_TOKENS,
        projection_dim=ENCODER_WIDTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModelWithProjection(config)


def build_transformer() -> SD3Transformer2DModel:
    """The MMDiT denoiser on 8x8x4 latents (random weights); see the module docstring for the layout."""
    from diffusers import SD3Transformer2DModel

    return SD3Transformer2DModel(
        sample_size=dm.LATENT_SIZE,
        patch_size=PATCH_SIZE,
        in_channels=dm.LATENT_CHANNELS,
        out_channels=dm.LATENT_CHANNELS,
        num_layers=NUM_LAYERS,
        attention_head_dim=HEAD_DIM,
        num_attention_heads=NUM_HEADS,
        joint_attention_dim=JOINT_DIM,
        caption_projection_dim=NUM_HEADS * HEAD_DIM,
        pooled_projection_dim=JOINT_DIM,
        pos_embed_max_size=dm.LATENT_SIZE // PATCH_SIZE,
    )


def load_vae(path: str | Path | None = None) -> AutoencoderKL:
    """The shipped digits autoencoder (or the one in ``path``), a fresh copy with ``shift_factor`` 0.0."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(str(path or dm.pipeline_path() / "vae"))
    vae.register_to_config(shift_factor=0.0)
    return vae.eval()


def build_scheduler() -> FlowMatchEulerDiscreteScheduler:
    """Flow-matching Euler with the static ``SHIFT`` (1.0: evenly spaced sigmas)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=SHIFT)


def assemble_pipeline(
    transformer: SD3Transformer2DModel,
    vae: AutoencoderKL,
    text_encoder: CLIPTextModelWithProjection,
    text_encoder_2: CLIPTextModelWithProjection,
    tokenizer: CLIPTokenizer | None = None,
) -> StableDiffusion3Pipeline:
    """Wrap the components as a ``StableDiffusion3Pipeline`` without T5 (see the module docstring)."""
    from diffusers import StableDiffusion3Pipeline

    tokenizer = tokenizer or load_tokenizer()
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=build_scheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=load_tokenizer(),
        text_encoder_3=None,  # type: ignore[arg-type]  # diffusers annotates it without None; SD3 runs without T5
        tokenizer_3=load_tokenizer(max_length=T5_TOKENS),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_pipeline(device: str = "cpu", path: str | Path | None = None) -> StableDiffusion3Pipeline:
    """Load the shipped (or the given) flow pipeline with ``StableDiffusion3Pipeline.from_pretrained``.

    Components saved as None (T5, the IP-adapter image encoder) must be passed as None again.
    """
    from diffusers import StableDiffusion3Pipeline

    from draftsdk.plugin_utils import quiet_diffusers, quiet_transformers

    with quiet_diffusers(), quiet_transformers():
        pipe = StableDiffusion3Pipeline.from_pretrained(
            str(path or pipeline_path()), text_encoder_3=None, image_encoder=None, feature_extractor=None
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
