"""GPU suite: DRaFT step cost and memory at real architecture sizes (random weights), in one command.

    python benchmarks/gpu_suite.py            # one H100/H200, <= 8 minutes with model construction
    python benchmarks/gpu_suite.py --tiny     # the same code on the CPU with draftsdk.testing's tiny pipelines (< 1 min)

On a GPU machine without diffusers, put it on the path: ``PYTHONPATH=/tmp/wheels python benchmarks/gpu_suite.py``.
Nothing is downloaded: every model is built from the published architecture configs written below,
with random weights made directly on the GPU, frozen in bf16, LoRA rank 4 in fp32. The reward is the
built-in ``brightness`` (nearly free, no weights), so the figures isolate the DRaFT machinery.

Sections (each guarded: an OOM or an error is reported in its rows and the rest still runs):

- SD-1.5 architecture, 512 px, T = 50 DDIM steps, CFG 7.5, batch 16 then 4: a diffusers pipeline
  call (no grad, the adapter disabled, bf16 latents, no autocast), draftsdk's own no-grad sampler
  (diagnostic), DRaFT-1, DRaFT-LV (n = 2) and full DRaFT, each timed as one ``Trainer.update``.
  Configurations run interleaved, one per round; round 0 warms up (not counted; full DRaFT skips it
  and runs once); the median of the rounds is kept. Ratios are to the pipeline call of the same batch.
- SDXL base architecture, 1024 px, T = 20, batch 1 and 4: pipeline call and DRaFT-1 (fits? peak memory).
- FLUX.1-dev transformer and VAE, 512 px, T = 8, batch 1: pipeline call and DRaFT-1. The text
  encoders are tiny random stand-ins with FLUX's output widths (CLIP pooled 768, T5 4096 x 512 tokens).

Peak memory is ``torch.cuda.max_memory_allocated`` reset before each run (weights included); on the
CPU it is the process's peak RSS (VmHWM, reset per run through /proc/self/clear_refs). A time budget
(``--budget``, seconds since start) skips the rows that would not fit, with a note, keeping a reserve
for the later sections. The targets (DRaFT-1 <= 1.10x the pipeline call and >= 4 images/s at batch
16; full DRaFT peak <= 1.05x DRaFT-1's; DRaFT-LV <= 1.15x DRaFT-1) are evaluated from the SD-1.5 rows.

Results: ``benchmarks/results/gpu/<YYYY-MM-DD>-<gpu>.{json,md}`` (``tiny-cpu.*`` with ``--tiny``),
with the command line, library versions, GPU name and date.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (str(HERE), str(ROOT)):  # draftsdk from this checkout, even when it is not installed
    if _path not in sys.path:
        sys.path.insert(0, _path)

import torch  # noqa: E402

START = time.perf_counter()
RESULTS_DIR = HERE / "results" / "gpu"
PROMPTS = [
    "a photo of a cat", "a watercolour fox", "a red car in the rain", "a bowl of fruit on a table",
    "a lighthouse at dusk", "an astronaut riding a horse", "a bicycle leaning on a wall", "a snowy mountain village",
    "a cup of coffee", "a portrait of an old man", "a field of sunflowers", "a robot reading a book",
    "a sailing boat at sea", "a plate of sushi", "a castle on a hill", "a dog in a park",
]
PIPELINE_ROW = "pipeline call (no grad)"
SAMPLER_ROW = "draftsdk sampler (no grad)"
REFERENCE = (  # /work/shared/DESIGN.md, section Performance: one H200, SD-1.5 architecture, bf16, 512 px, T = 50, CFG 7.5
    "DESIGN.md reference (H200, plain eager loop): batch 16 no-grad sampling 5.47 s; DRaFT-1 6.04 s (1.10x), "
    "28.2 GiB; full DRaFT checkpointed at batch 4 9.2 s, 8.45 GiB (the DRaFT-1 peak); chip limit ~8.5 images/s"
)

# -- published architecture configs (random weights; nothing is downloaded) ----------------------------------
SD15_UNET = dict(  # runwayml/stable-diffusion-v1-5 unet/config.json
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32, norm_eps=1e-5, act_fn="silu",
    center_input_sample=False, downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, mid_block_scale_factor=1,
)
SD_VAE = dict(  # stable-diffusion-v1-5 vae/config.json
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, act_fn="silu",
    norm_num_groups=32, sample_size=512, scaling_factor=0.18215,
)
CLIP_L_TEXT = dict(  # openai/clip-vit-large-patch14 text tower (SD 1.x; SDXL's first encoder)
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
)
SDXL_UNET = dict(  # stabilityai/stable-diffusion-xl-base-1.0 unet/config.json
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048,
    use_linear_projection=True, addition_embed_type="text_time", addition_embed_type_num_heads=64,
    addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816, norm_num_groups=32, norm_eps=1e-5,
    act_fn="silu", flip_sin_to_cos=True, freq_shift=0, downsample_padding=1, mid_block_scale_factor=1,
)
SDXL_VAE = {**SD_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}
CLIP_BIGG_TEXT = dict(  # laion CLIP ViT-bigG/14 text tower with projection (SDXL's text_encoder_2)
    vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
    max_position_embeddings=77, hidden_act="gelu", projection_dim=1280,
)
FLUX_DEV_TRANSFORMER = dict(  # black-forest-labs/FLUX.1-dev transformer/config.json
    patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128, num_attention_heads=24,
    joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True, axes_dims_rope=(16, 56, 56),
)
FLUX_VAE = dict(  # FLUX.1-dev vae/config.json
    in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, act_fn="silu",
    norm_num_groups=32, sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159,
    use_quant_conv=False, use_post_quant_conv=False,
)
FLUX_SCHEDULER = dict(  # FLUX.1-dev scheduler/scheduler_config.json
    num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
    base_image_seq_len=256, max_image_seq_len=4096,
)
SD_SCHEDULE = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                   steps_offset=1, clip_sample=False, set_alpha_to_one=False, prediction_type="epsilon")
# FLUX's text encoders are stand-ins: one layer each, with the widths the transformer reads.
FLUX_FAKE_CLIP = dict(vocab_size=514, hidden_size=768, intermediate_size=768, num_hidden_layers=1, num_attention_heads=12,
                      max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
FLUX_FAKE_T5 = dict(vocab_size=514, d_model=4096, d_ff=256, d_kv=64, num_layers=1, num_heads=2, relative_attention_num_buckets=32)
FLUX_T5_TOKENS = 512  # FluxPipeline's default max_sequence_length

PUBLISHED_PARAMS = {  # parameter counts of the released checkpoints, to check the configs above
    ("sd15", "unet"): 859_520_964, ("sd15", "vae"): 83_653_863, ("sd15", "text_encoder"): 123_060_480,
    ("sdxl", "unet"): 2_567_463_684, ("sdxl", "vae"): 83_653_863, ("sdxl", "text_encoder"): 123_060_480,
    ("sdxl", "text_encoder_2"): 694_659_840, ("flux", "transformer"): 11_901_408_320,
}


def byte_level_clip_tokenizer(vocab_size: int = 49408, model_max_length: int = 77) -> Any:
    """A CLIP tokenizer without merges (every character a token), padded to ``vocab_size`` ids.

    It tokenizes like CLIP's BPE at the byte level and needs no vocabulary file (open_clip ships the
    real one; it is not installed on the GPU machine). The prompts only have to become 77 ids here.
    """
    from transformers import CLIPTokenizer

    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes, extra = printable[:], 0
    for b in range(256):  # CLIP's bytes_to_unicode: unprintable bytes map to code points from 256 on
        if b not in printable:
            codes.append(256 + extra)
            extra += 1
    chars = [chr(c) for c in codes]
    tokens = chars + [c + "</w>" for c in chars]
    if vocab_size < len(tokens) + 2:
        raise ValueError(f"vocab_size must be at least {len(tokens) + 2}")
    tokens += [f"<|unused{i}|>" for i in range(vocab_size - 2 - len(tokens))]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=model_max_length)


def _cast(module: Any, dtype: torch.dtype) -> Any:
    """``module.to(dtype)`` without diffusers' warning about modules to keep in float32 (there are none here)."""
    if dtype == torch.float32:
        return module
    from draftsdk.plugin_utils import quiet_diffusers

    with quiet_diffusers():
        return module.to(dtype)


def _text_ids(tokenizer: Any) -> dict[str, int]:
    return dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def build_sd15(device: str, dtype: torch.dtype) -> Any:
    """Stable Diffusion 1.5's architecture: UNet, VAE, CLIP ViT-L text encoder, DDIM."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = byte_level_clip_tokenizer()
    torch.manual_seed(0)
    with torch.device(device):
        unet = _cast(UNet2DConditionModel(**SD15_UNET), dtype)
        vae = _cast(AutoencoderKL(**SD_VAE), dtype)
        text = _cast(CLIPTextModel(CLIPTextConfig(**CLIP_L_TEXT, **_text_ids(tokenizer))), dtype)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=DDIMScheduler(**SD_SCHEDULE),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_sdxl(device: str, dtype: torch.dtype) -> Any:
    """SDXL base's architecture: UNet, VAE, CLIP ViT-L and OpenCLIP ViT-bigG text encoders; DDIM on its schedule."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizer, tokenizer_2 = byte_level_clip_tokenizer(), byte_level_clip_tokenizer()
    torch.manual_seed(0)
    with torch.device(device):
        unet = _cast(UNet2DConditionModel(**SDXL_UNET), dtype)
        vae = _cast(AutoencoderKL(**SDXL_VAE), dtype)
        text = _cast(CLIPTextModel(CLIPTextConfig(**CLIP_L_TEXT, **_text_ids(tokenizer))), dtype)
        text_2 = _cast(CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_BIGG_TEXT, **_text_ids(tokenizer_2))), dtype)
    scheduler = DDIMScheduler(**{**SD_SCHEDULE, "timestep_spacing": "leading"})
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text, text_encoder_2=text_2, tokenizer=tokenizer, tokenizer_2=tokenizer_2,
                                     unet=unet, scheduler=scheduler, force_zeros_for_empty_prompt=True, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_flux(device: str, dtype: torch.dtype) -> Any:
    """FLUX.1-dev's transformer, VAE and scheduler; one-layer stand-in text encoders of the right widths."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    tokenizer = byte_level_clip_tokenizer(FLUX_FAKE_CLIP["vocab_size"])
    tokenizer_2 = byte_level_clip_tokenizer(FLUX_FAKE_T5["vocab_size"], model_max_length=FLUX_T5_TOKENS)
    torch.manual_seed(0)
    with torch.device(device):
        transformer = _cast(FluxTransformer2DModel(**FLUX_DEV_TRANSFORMER), dtype)
        vae = _cast(AutoencoderKL(**FLUX_VAE), dtype)
        text = _cast(CLIPTextModel(CLIPTextConfig(**FLUX_FAKE_CLIP, **_text_ids(tokenizer))), dtype)
        t5 = _cast(T5EncoderModel(T5Config(**FLUX_FAKE_T5, pad_token_id=tokenizer_2.pad_token_id, decoder_start_token_id=0)), dtype)
    pipe = FluxPipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER), vae=vae,
                        text_encoder=text, tokenizer=tokenizer, text_encoder_2=t5, tokenizer_2=tokenizer_2)
    pipe.set_progress_bar_config(disable=True)
    return pipe


FULL_BUILDERS: dict[str, Callable[[str, torch.dtype], Any]] = {"sd15": build_sd15, "sdxl": build_sdxl, "flux": build_flux}
COMPONENTS = ("unet", "transformer", "vae", "text_encoder", "text_encoder_2")


def parameter_counts(pipe: Any) -> dict[str, int]:
    """Parameters of each model component of a pipeline (frozen weights; LoRA excluded)."""
    counts = {}
    for name in COMPONENTS:
        module = getattr(pipe, name, None)
        if isinstance(module, torch.nn.Module):
            counts[name] = sum(p.numel() for n, p in module.named_parameters() if "lora_" not in n)
    return counts


def check_architectures() -> dict[str, Any]:
    """Build every full-size architecture on the meta device (no memory, a few seconds); compare parameter counts.

    It runs the same builders as the GPU sections, so ``--tiny`` on a CPU checks their configs too.
    """
    report: dict[str, Any] = {}
    for key, builder in FULL_BUILDERS.items():
        try:
            counts = parameter_counts(builder("meta", torch.float32))
        except Exception as exc:  # noqa: BLE001 - reported, the suite goes on
            report[key] = {"error": _one_line(exc)}
            continue
        report[key] = {name: {"params": n, "published": PUBLISHED_PARAMS.get((key, name)),
                              "matches": PUBLISHED_PARAMS.get((key, name)) in (None, n)} for name, n in counts.items()}
    return report


def build_tiny(key: str, device: str, dtype: torch.dtype) -> Any:
    """draftsdk.testing's random-weight toy pipelines: what ``--tiny`` measures instead of the full sizes."""
    from draftsdk import testing

    builder = {"sd15": testing.tiny_pipeline, "sdxl": testing.tiny_sdxl_pipeline, "flux": testing.tiny_flux_pipeline}[key]
    pipe = builder()
    pipe.set_progress_bar_config(disable=True)
    for name in COMPONENTS:
        if isinstance(module := getattr(pipe, name, None), torch.nn.Module):
            _cast(module, dtype)
    return pipe.to(device)


# -- small helpers ---------------------------------------------------------------------------------------------
def slug(text: str) -> str:
    """``"NVIDIA H200"`` -> ``"nvidia-h200"`` (file names of the results)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def is_oom(exc: BaseException) -> bool:
    """CUDA out-of-memory, whichever way it surfaced (OutOfMemoryError, cuDNN/cuBLAS alloc failures)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    cause = exc.__cause__
    if cause is not None and cause is not exc and is_oom(cause):
        return True  # e.g. draftsdk's DraftError with the memory hint
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "alloc_failed" in text)


def _failure(exc: BaseException, device: str) -> str:
    """The status of a failed build or run: ``OOM at <peak> GiB: ...`` or ``error: ...`` (traceback to stderr)."""
    if is_oom(exc):
        where = f" at {peak_gib(device):.1f} GiB allocated" if device.startswith("cuda") else ""
        return f"OOM{where}: {_one_line(exc)}"
    traceback.print_exc(file=sys.stderr)
    return f"error: {_one_line(exc)}"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        return
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak RSS (Linux)


def peak_gib(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    with contextlib.suppress(OSError, StopIteration):
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM"))
        return int(line.split()[1]) / 2**20  # kB
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def free_memory(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


class Budget:
    """Seconds left of the suite's budget, counted from the start of the process (imports included)."""

    def __init__(self, seconds: float, start: float = START) -> None:
        self.seconds, self.start = seconds, start

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def allows(self, estimate: float, reserve: float = 0.0) -> bool:
        return self.left() - reserve >= estimate


def log(budget: Budget, text: str) -> None:
    print(f"[{budget.elapsed():6.1f}s] {text}", file=sys.stderr, flush=True)


# -- the sections ----------------------------------------------------------------------------------------------
@dataclass
class VariantRow:
    name: str
    config: dict[str, Any]
    warmup: bool = True  # False: no warm-up run, measured once (full DRaFT: the other rows warmed its kernels)
    once: bool = False
    guess: float = 1.2  # first-run time estimate, in pipeline calls of the same batch (for the budget)
    guess_extra_s: float = 0.0  # plus this (compilation)


@dataclass
class Section:
    key: str
    title: str
    steps: int
    guidance: float
    size: int | None  # image height = width (None: the pipeline's default)
    batches: list[int]
    rows: list[VariantRow]
    repeats: int
    sampler_row: bool = False
    target_batch: int | None = None
    min_s: float = 0.0  # do not start the section with less than this left (build + one round)
    reserve_s: float = 0.0  # seconds kept for the later sections (their min_s; set by suite())
    notes: list[str] = field(default_factory=list)


def suite(args: argparse.Namespace) -> list[Section]:
    """The sections, at full size or (``--tiny``) at toy size with the same structure."""
    tiny = args.tiny
    sd_t = args.sd_steps or (4 if tiny else 50)
    xl_t = args.sdxl_steps or (3 if tiny else 20)
    fx_t = args.flux_steps or (3 if tiny else 8)
    sd_rows = [VariantRow("DRaFT-1", {"variant": "draft-k", "k": 1}),
               VariantRow("DRaFT-LV (n=2)", {"variant": "draft-lv", "lv_copies": 2}, guess=1.3),
               VariantRow(f"full DRaFT (K={sd_t})", {"variant": "draft"}, warmup=False, once=True, guess=5.0)]
    compile_note = "compile rows: skipped, draftsdk's TrainConfig has no `compile` field"
    if compile_available():
        compile_note = "compile rows: TrainConfig(compile=True); their warm-up run includes the compilation"
        extra = 2.0 if tiny else 60.0
        # --tiny checks the mechanism with dynamo's eager backend: inductor would spend minutes compiling on a CPU
        on = {"compile": True, **({"compile_options": {"backend": "eager"}} if tiny else {})}
        if tiny:
            compile_note += " (--tiny: backend='eager', the mechanism only)"
        sd_rows += [VariantRow("DRaFT-1, compile", {"variant": "draft-k", "k": 1, **on}, guess_extra_s=extra),
                    VariantRow("DRaFT-LV (n=2), compile", {"variant": "draft-lv", "lv_copies": 2, **on}, guess=1.3,
                               guess_extra_s=extra)]
    repeats = args.repeats
    sections = [
        Section("sd15", "SD-1.5", sd_t, 7.5, None if tiny else 512, [2, 1] if tiny else [16, 4], sd_rows,
                repeats or (1 if tiny else 3), sampler_row=True, target_batch=2 if tiny else 16, min_s=2 if tiny else 60,
                notes=["UNet, VAE and CLIP ViT-L text encoder with SD 1.5's published configs" if not tiny else
                       "draftsdk.testing.tiny_pipeline (toy SD-1.5 shape)", compile_note]),
        Section("sdxl", "SDXL", xl_t, 5.0, None if tiny else 1024, [1, 2] if tiny else [1, 4],
                [VariantRow("DRaFT-1", {"variant": "draft-k", "k": 1})], repeats or 1, min_s=2 if tiny else 45,
                notes=[f"T = {xl_t}: DRaFT-1's memory does not depend on T (the first T - 1 steps run without grad)",
                       "SDXL base UNet/VAE, CLIP ViT-L + OpenCLIP ViT-bigG text encoders with the published configs" if not tiny else
                       "draftsdk.testing.tiny_sdxl_pipeline"]),
        Section("flux", "FLUX.1-dev", fx_t, 3.5, 32 if tiny else 512, [1], [VariantRow("DRaFT-1", {"variant": "draft-k", "k": 1})],
                repeats or (1 if tiny else 2), min_s=2 if tiny else 35,
                notes=["transformer (19 double + 38 single blocks, 24 x 128 heads, guidance embeds) and VAE with FLUX.1-dev's "
                       "configs; the text encoders are one-layer random stand-ins with FLUX's output widths (CLIP pooled 768, "
                       f"T5 4096 x {FLUX_T5_TOKENS} tokens), so the pipeline call's text encoding costs less than FLUX's "
                       "(draftsdk encodes each prompt once and caches it)" if not tiny else
                       "draftsdk.testing.tiny_flux_pipeline at 32 px"]),
    ]
    chosen = set(args.sections.split(",")) if args.sections else None
    plan = [s for s in sections if chosen is None or s.key in chosen]
    for i, section in enumerate(plan):  # SD-1.5 (the targets) goes first; the later sections keep enough to start
        section.reserve_s = sum(later.min_s for later in plan[i + 1:])
    return plan


def compile_available() -> bool:
    from draftsdk import TrainConfig

    return "compile" in TrainConfig.model_fields


def make_trainer(pipe: Any, section: Section, row: VariantRow, batch: int, args: argparse.Namespace, root: Path) -> Any:
    import draftsdk

    config = draftsdk.TrainConfig(
        **row.config, steps=10**6, batch_size=batch, num_inference_steps=section.steps, guidance_scale=section.guidance,
        height=section.size, width=section.size, lora_rank=4, device=args.device, mixed_precision=args.mixed_precision,
        progress=False, tensorboard=False, output_dir=Path(tempfile.mkdtemp(dir=root)) / "run",
    )
    return draftsdk.Trainer(pipe, "brightness", config)


@dataclass
class Op:
    name: str
    fn: Callable[[], Any]
    warmup: bool = True
    once: bool = False
    guess: float = 1.0
    guess_extra_s: float = 0.0
    runs: list[float] = field(default_factory=list)
    first_s: float | None = None
    peak: float = 0.0
    status: str = "ok"
    nonfinite: int = 0
    budget_cut: bool = False


def _estimate(op: Op, ops: dict[str, Op], history: dict[str, tuple[int, float]], batch: int) -> float:
    """Expected seconds of the next run of ``op`` (for the budget guard)."""
    if op.runs:
        return statistics.median(op.runs)
    if op.first_s is not None:
        return op.first_s
    if op.name in history:  # same configuration at another batch: scale by the batch
        b, seconds = history[op.name]
        return seconds * batch / b
    base = ops.get(PIPELINE_ROW)
    if base is not None and op is not base and (base.runs or base.first_s is not None):
        return op.guess * _estimate(base, ops, history, batch) + op.guess_extra_s
    return op.guess_extra_s


def run_batch(section: Section, pipe: Any, batch: int, args: argparse.Namespace, budget: Budget,
              history: dict[str, tuple[int, float]], root: Path) -> list[dict[str, Any]]:
    """Every configuration of one section at one batch, interleaved; one result row each."""
    from draftsdk.sampling import Sampler

    prompts = (PROMPTS * batch)[:batch]
    errors: dict[str, str] = {}
    trainers: dict[str, Any] = {}
    for row in section.rows:  # trainers first: they attach the (shared) LoRA adapter
        try:
            trainers[row.name] = make_trainer(pipe, section, row, batch, args, root)
        except Exception as exc:  # noqa: BLE001
            errors[row.name] = _failure(exc, args.device)
        if row.name in errors:
            free_memory(args.device)  # outside the except block: the traceback no longer holds the tensors
    sampler = Sampler(pipe, num_inference_steps=section.steps, guidance_scale=section.guidance, height=section.size, width=section.size)
    denoiser = sampler.denoiser
    noise = sampler.initial_noise(batch, torch.Generator().manual_seed(0)).to(denoiser.dtype)
    extra: dict[str, Any] = {}
    if sampler.family.name == "flux":
        extra["max_sequence_length"] = sampler.family.max_sequence_length(pipe)

    def pipeline_call() -> None:
        adapted = bool(getattr(denoiser, "peft_config", None))
        if adapted:
            denoiser.disable_adapters()  # the plain diffusers call: no LoRA
        try:
            with torch.no_grad():
                pipe(prompt=prompts, height=sampler.height, width=sampler.width, num_inference_steps=section.steps,
                     guidance_scale=section.guidance, latents=noise, output_type="pt", **extra)
        finally:
            if adapted:
                denoiser.enable_adapters()

    ops: dict[str, Op] = {PIPELINE_ROW: Op(PIPELINE_ROW, pipeline_call)}
    first = next(iter(trainers.values()), None)
    if section.sampler_row and first is not None:
        own = first.sampler

        def sample_ours() -> None:
            with torch.no_grad(), first._autocast():
                own.decode(own.denoise(noise.float(), own.encode(prompts)), grad=False)

        ops[SAMPLER_ROW] = Op(SAMPLER_ROW, sample_ours)
    for row in section.rows:
        if row.name in trainers:
            ops[row.name] = Op(row.name, (lambda t=trainers[row.name]: t.update(prompts)), row.warmup, row.once, row.guess,
                               row.guess_extra_s)
    reserve = section.reserve_s
    for round_ in range(section.repeats + 1):  # round 0 warms up
        for op in ops.values():
            if op.status != "ok" or (round_ == 0 and not op.warmup) or (round_ > 0 and op.once and op.runs):
                continue
            estimate = _estimate(op, ops, history, batch)
            if not budget.allows(estimate, reserve):
                op.budget_cut = True
                if not op.runs:
                    op.status = "skipped (time budget)"
                log(budget, f"{section.key} b{batch} {op.name}: skipped, ~{estimate:.0f} s would not fit the budget")
                continue
            failure = out = None
            try:
                if round_ == 0 and args.device.startswith("cuda"):
                    torch.cuda.empty_cache()  # each configuration starts from the same allocator state
                sync(args.device)
                reset_peak(args.device)
                t0 = time.perf_counter()
                out = op.fn()
                sync(args.device)
                seconds = time.perf_counter() - t0
            except Exception as exc:  # noqa: BLE001 - one configuration failing must not stop the suite
                failure = _failure(exc, args.device)
            if failure is not None:  # the configuration is not run again
                op.status = failure
                free_memory(args.device)
                log(budget, f"{section.key} b{batch} {op.name}: {op.status}")
                continue
            op.peak = max(op.peak, peak_gib(args.device))
            if isinstance(out, dict) and out.get("skipped"):
                op.nonfinite += 1
            if round_ == 0:
                op.first_s = seconds
            else:
                op.runs.append(seconds)
            log(budget, f"{section.key} b{batch} {op.name} {'warm-up' if round_ == 0 else f'run {len(op.runs)}'}: "
                        f"{seconds:.3f} s, peak {op.peak:.2f} GiB")
    rows = []
    base = ops[PIPELINE_ROW]
    base_s = statistics.median(base.runs) if base.runs else None
    for name in [PIPELINE_ROW, SAMPLER_ROW, *[r.name for r in section.rows]]:
        if name in errors:
            rows.append({"section": section.key, "batch": batch, "config": name, "status": errors[name]})
            continue
        if name not in ops:
            continue
        op = ops[name]
        row: dict[str, Any] = {"section": section.key, "batch": batch, "config": name, "status": op.status,
                               "runs": [round(r, 4) for r in op.runs], "first_s": op.first_s, "peak_gib": op.peak or None}
        if op.runs:
            median = statistics.median(op.runs)
            history[name] = (batch, median)
            row.update(median_s=median, images_per_s=batch / median, vs_pipeline=median / base_s if base_s else None)
        elif op.status == "ok":
            row["status"] = "skipped (time budget)" if op.budget_cut else "not run"
        notes = []
        if op.budget_cut and op.runs:
            notes.append(f"{len(op.runs)} run(s): time budget")
        if op.nonfinite:
            notes.append(f"{op.nonfinite} update(s) with a non-finite reward (no backward)")
        if notes:
            row["note"] = "; ".join(notes)
        rows.append(row)
    return rows  # the caller frees the trainers' memory (gc) once this frame is gone


def run_section(section: Section, args: argparse.Namespace, budget: Budget, root: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"title": section.title, "steps": section.steps, "guidance": section.guidance,
                              "image_size": section.size, "batches": section.batches, "repeats": section.repeats,
                              "notes": section.notes, "rows": [], "status": "ok"}
    if not budget.allows(section.min_s, section.reserve_s):
        result["status"] = "skipped (time budget)"
        return result
    log(budget, f"{section.key}: building")
    t0 = time.perf_counter()
    pipe = None
    try:
        pipe = build_tiny(section.key, args.device, args.dtype) if args.tiny else FULL_BUILDERS[section.key](args.device, args.dtype)
        pipe = pipe.to(args.device)
    except Exception as exc:  # noqa: BLE001
        result["status"] = _failure(exc, args.device)
    if pipe is None:
        free_memory(args.device)
        return result
    result["build_s"] = time.perf_counter() - t0
    result["params"] = parameter_counts(pipe)
    if section.size is None:  # the pipeline's default size
        from draftsdk.sampling import Sampler

        result["image_size"] = Sampler(pipe, num_inference_steps=section.steps).height
    history: dict[str, tuple[int, float]] = {}
    for batch in section.batches:
        failure = None
        try:
            result["rows"] += run_batch(section, pipe, batch, args, budget, history, root)
        except Exception as exc:  # noqa: BLE001 - e.g. the sampler itself does not fit
            failure = _failure(exc, args.device)
        if failure is not None:
            result["rows"].append({"section": section.key, "batch": batch, "config": "(all)", "status": failure})
        free_memory(args.device)
    del pipe
    free_memory(args.device)
    return result


# -- targets, table, files ---------------------------------------------------------------------------------------
def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def evaluate_targets(rows: Sequence[dict[str, Any]], batch: int | None, where: str = "SD-1.5") -> list[dict[str, Any]]:
    """PASS/FAIL of each target, from the rows of one section (those at ``batch``)."""
    by = {r["config"]: r for r in rows if r.get("batch") == batch}

    def get(config_prefix: str, key: str) -> float | None:
        row = next((r for name, r in by.items() if name == config_prefix or name.startswith(config_prefix + " (")), None)
        value = None if row is None else row.get(key)
        return float(value) if value is not None and math.isfinite(float(value)) else None

    one_s, one_peak = get("DRaFT-1", "median_s"), get("DRaFT-1", "peak_gib")
    specs = [
        (f"DRaFT-1 step / pipeline call ({where}, batch {batch})", _ratio(one_s, get(PIPELINE_ROW, "median_s")), "<=", 1.10, "x"),
        (f"DRaFT-1 images/s ({where}, batch {batch})", get("DRaFT-1", "images_per_s"), ">=", 4.0, ""),
        (f"full DRaFT peak / DRaFT-1 peak ({where}, batch {batch})", _ratio(get("full DRaFT", "peak_gib"), one_peak), "<=", 1.05, "x"),
        (f"DRaFT-LV step / DRaFT-1 step ({where}, batch {batch})", _ratio(get("DRaFT-LV", "median_s"), one_s), "<=", 1.15, "x"),
    ]
    targets = []
    for name, value, op, threshold, unit in specs:
        if value is None:
            status = "N/A"
        else:
            status = "PASS" if (value <= threshold if op == "<=" else value >= threshold) else "FAIL"
        targets.append({"target": name, "value": value, "op": op, "threshold": threshold, "unit": unit, "status": status})
    return targets


def _fmt(value: Any, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def render_table(sections: dict[str, dict[str, Any]]) -> str:
    lines = ["| section | batch | configuration | s/step | vs pipeline call | images/s | peak GiB | status |",
             "|---|---|---|---|---|---|---|---|"]
    for key, sec in sections.items():
        size = sec.get("image_size")
        label = f"{sec['title']}{f' {size}px' if size else ''} T={sec['steps']}"
        if not sec["rows"]:
            lines.append(f"| {label} | - | - | - | - | - | - | {sec['status']} |")
        for r in sec["rows"]:
            status = r["status"] + (f" ({r['note']})" if r.get("note") else "")
            lines.append(f"| {label} | {r['batch']} | {r['config']} | {_fmt(r.get('median_s'), '.3f')} | "
                         f"{_fmt(r.get('vs_pipeline'), '.3f', 'x')} | {_fmt(r.get('images_per_s'), '.2f')} | "
                         f"{_fmt(r.get('peak_gib'), '.2f')} | {status} |")
    return "\n".join(lines)


def render_targets(targets: Sequence[dict[str, Any]]) -> str:
    out = []
    for t in targets:
        value = "not measured" if t["value"] is None else f"{t['value']:.3f}{t['unit']}"
        out.append(f"{t['status']:4}  {t['target']}: {value} (target {t['op']} {t['threshold']:g}{t['unit']})")
    return "\n".join(out)


def environment(args: argparse.Namespace) -> dict[str, Any]:
    from common import machine

    info = machine()
    info["device"] = args.device
    if args.device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    return info


def write_results(out_dir: Path, stem: str, payload: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    md_path.write_text(markdown + "\n")
    return json_path, md_path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU, draftsdk.testing's tiny pipelines, few steps (< 1 min)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results/gpu/)")
    parser.add_argument("--name", default=None, help="file stem (default <YYYY-MM-DD>-<gpu>, or tiny-cpu with --tiny)")
    parser.add_argument("--budget", type=float, default=None, help="seconds for the whole suite (default 450; 150 with --tiny)")
    parser.add_argument("--sections", default=None, help="comma-separated subset of sd15,sdxl,flux")
    parser.add_argument("--repeats", type=int, default=None, help="measured rounds per batch (default per section)")
    parser.add_argument("--sd-steps", type=int, default=None)
    parser.add_argument("--sdxl-steps", type=int, default=None)
    parser.add_argument("--flux-steps", type=int, default=None)
    parser.add_argument("--device", default=None, help="default cuda (cpu with --tiny)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1 with --tiny: toy models on a shared CPU)")
    args = parser.parse_args(argv)
    unknown = set(args.sections.split(",")) - set(FULL_BUILDERS) if args.sections else set()
    if unknown:
        parser.error(f"--sections: unknown {', '.join(sorted(unknown))}; choose from {', '.join(FULL_BUILDERS)}")
    args.device = args.device or ("cpu" if args.tiny else "cuda")
    args.budget = args.budget or (150.0 if args.tiny else 450.0)  # a guard: --tiny takes 30-60 s on 2 cores
    half = args.device.startswith("cuda")  # bf16 frozen weights on the GPU; fp32 on the CPU (bf16 kernels there are slow)
    args.mixed_precision = "bf16" if half else "no"
    args.dtype = torch.bfloat16 if half else torch.float32
    return args


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DRAFTSDK_LOAD_PLUGINS", "")  # built-in rewards only: no reward plugin (and no open_clip) is imported
    args = parse_args(argv)
    budget = Budget(args.budget)
    if args.threads or args.tiny:
        torch.set_num_threads(args.threads or 1)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_suite: no CUDA GPU is visible; run it on a GPU machine, or use --tiny for the CPU check", file=sys.stderr)
        return 2
    try:
        import diffusers  # noqa: F401

        import draftsdk  # noqa: F401
    except ImportError as exc:
        print(f"gpu_suite: cannot import {exc.name or exc}: put diffusers (and draftsdk's pure-Python dependencies: pydantic, "
              "pluggy, pyyaml, tqdm) on PYTHONPATH, e.g. pip install --no-deps --target /tmp/wheels diffusers ...; "
              "PYTHONPATH=/tmp/wheels python benchmarks/gpu_suite.py", file=sys.stderr)
        return 2
    if args.device.startswith("cuda"):
        torch.cuda.set_device(torch.device(args.device))
    log(budget, f"device {args.device}, budget {args.budget:.0f} s")
    architectures = check_architectures()
    log(budget, "architecture configs checked on the meta device")
    plan = suite(args)
    sections: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="gpu_suite_") as tmp:  # the trainers' (unused) run directories
        for section in plan:
            sections[section.key] = run_section(section, args, budget, Path(tmp))
    sd15 = next((s for s in plan if s.key == "sd15"), None)
    targets = evaluate_targets(sections["sd15"]["rows"] if sd15 else [], sd15.target_batch if sd15 else None)
    table = render_table(sections)
    env = environment(args)
    date = time.strftime("%Y-%m-%d", time.gmtime())
    stem = args.name or ("tiny-cpu" if args.tiny else f"{date}-{slug(env.get('gpu', args.device))}")
    from common import command_line

    payload = {
        "command": command_line(),
        "mode": "tiny" if args.tiny else "full",
        "machine": env,
        "settings": {"budget_s": args.budget, "device": args.device, "mixed_precision": args.mixed_precision, "lora_rank": 4,
                     "reward": "brightness", "sections": [s.key for s in plan],
                     "targets_from": f"sd15, batch {sd15.target_batch}" if sd15 else None},
        "compile": {"available": compile_available()},
        "architectures": architectures,
        "sections": sections,
        "targets": targets,
        "table": table,
        "reference": REFERENCE,
        "elapsed_s": round(budget.elapsed(), 1),
    }
    notes = [f"- {s['title']}: {n}" for s in sections.values() for n in s["notes"]]
    bad = [f"{key}.{name}: {v['params']} params, published {v['published']}" for key, comps in architectures.items()
           if isinstance(comps, dict) for name, v in comps.items() if isinstance(v, dict) and not v.get("matches", True)]
    bad += [f"{key}: {comps['error']}" for key, comps in architectures.items() if "error" in comps]
    notes.append("- architecture configs: " + ("all parameter counts match the published checkpoints" if not bad else "; ".join(bad)))
    if args.tiny:
        notes.append("- tiny CPU run: toy pipelines; the targets are meant for the GPU run, the figures only show the code works")
    memory = "torch.cuda.max_memory_allocated, reset per run (weights included)" if args.device.startswith("cuda") else \
        "CPU peak RSS of the process (VmHWM), reset per run"
    markdown = "\n".join([
        f"# GPU suite: {env.get('gpu', args.device)}, {date}", "",
        f"Command: `{payload['command']}`", "",
        f"Machine: {env.get('gpu', args.device)}; torch {env['torch']}, diffusers {env['diffusers']}, transformers "
        f"{env['transformers']}, peft {env['peft']}, Python {env['python']}; {env['date']}; suite took {payload['elapsed_s']} s.", "",
        f"Random weights, frozen in {'bf16' if args.mixed_precision == 'bf16' else 'fp32'}, LoRA rank 4 (fp32), reward "
        f"`brightness`; one step = one `Trainer.update`; the pipeline call is diffusers' `__call__` without grad, "
        f"the adapter disabled; ratios to the pipeline call of the same batch, measured interleaved; peak memory: {memory}.", "",
        table, "", "Targets:", "", "```", render_targets(targets), "```", "", "Notes:", "", *notes, f"- {REFERENCE}",
    ])
    out_dir = args.out or RESULTS_DIR
    json_path, md_path = write_results(out_dir, stem, payload, markdown)
    print(table)
    print()
    print(render_targets(targets))
    print()
    print("\n".join(notes))
    print(f"\nwrote {json_path} and {md_path.name} ({payload['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
