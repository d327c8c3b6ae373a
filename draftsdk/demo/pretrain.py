"""Reproduce every shipped weight of the digits world from scikit-learn's digits, on CPU, with fixed seeds.

``python -m draftsdk.demo.pretrain [--out DIR] [--quick] [--threads 2]``

Stages, all on the training split of ``draftsdk.demo.data`` (the held-out 20 % is only evaluated):

1. autoencoder (400 steps, batch 128): MSE reconstruction + a small KL term (weight 1e-4 per latent
   element); then ``scaling_factor`` = 1 / std of the training latents;
2. UNet + text encoder jointly (4000 steps, batch 64, AdamW 1e-3, cosine): the epsilon-prediction DDPM
   loss on 8x8x4 latents, prompts drawn from ``model.PROMPT_TEMPLATES``, 10 % replaced by the empty prompt
   (classifier-free guidance); the saved weights are an exponential moving average (decay 0.999, warmed
   up as ``(1 + step) / (10 + step)``);
3. the reward classifier (1500 steps, batch 128): soft-label cross-entropy with mixup (alpha 0.4), random
   affine jitter (shifts up to 2 px, rotations up to 10 degrees, scale 0.9-1.1) and weight decay. Mixup
   keeps its log-probabilities moderate and smooth between classes (about -10 rather than -36 for the
   wrong digit), which is what gives the ``digit-target`` reward useful gradients.

It writes ``pipeline/`` (``StableDiffusionPipeline.save_pretrained``, safetensors),
``classifier.safetensors`` and ``pretrain_log.json`` (budget, losses, held-out accuracy, wall times) to
``--out`` (default: the shipped ``draftsdk/demo/weights``). Torch runs in deterministic mode, so runs
with the same ``--threads`` on the same CPU type give bit-identical weights. Measured for the shipped
weights on 2 free CPU cores: 554 s wall (autoencoder 49 s, diffusion 491 s, classifier 12 s; see
``pretrain_log.json``); jobs competing for the cores can make it several times slower.
``--quick`` runs 3 steps per stage on 64 images (seconds; for tests).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from draftsdk.demo import model as dm
from draftsdk.demo.classifier import CLASSIFIER_FILE, DigitClassifier
from draftsdk.demo.data import DigitSplit, load_splits

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

CFG_DROPOUT = 0.1
EMA_DECAY = 0.999
MIXUP_ALPHA = 0.4
VAE_KL_WEIGHT = 1e-4


@dataclass(frozen=True)
class Budget:
    """Steps and batch sizes of the three stages."""

    vae_steps: int
    vae_batch: int
    diffusion_steps: int
    diffusion_batch: int
    classifier_steps: int
    classifier_batch: int


FULL = Budget(400, 128, 4000, 64, 1500, 128)
QUICK = Budget(3, 16, 3, 16, 3, 16)
QUICK_IMAGES = 64


def lr_at(step: int, total: int, peak: float, warmup: int = 100) -> float:
    """Linear warm-up, then cosine decay to 10 % of ``peak``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def log_every(step: int, total: int, n: int = 10) -> bool:
    """True on about ``n`` evenly spaced steps, and the last one."""
    return step == total - 1 or step % max(1, total // n) == 0


def train_vae(train: DigitSplit, budget: Budget, seed: int = 1) -> tuple[AutoencoderKL, dict]:
    """Fit the autoencoder and set its ``scaling_factor``; returns the model (eval mode) and a log."""
    torch.manual_seed(seed)
    vae = dm.build_vae().train()
    x_all = train.rgb() * 2.0 - 1.0
    opt = torch.optim.AdamW(vae.parameters(), lr=2e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    for step in range(budget.vae_steps):
        set_lr(opt, lr_at(step, budget.vae_steps, 2e-3))
        x = x_all[torch.randint(0, len(x_all), (budget.vae_batch,), generator=gen)]
        posterior = vae.encode(x).latent_dist
        mse = F.mse_loss(vae.decode(posterior.sample(generator=gen)).sample, x)
        kl = posterior.kl().mean() / posterior.mean[0].numel()
        loss = mse + VAE_KL_WEIGHT * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if log_every(step, budget.vae_steps):
            print(f"  autoencoder {step:5d}/{budget.vae_steps}  mse {mse.item():.5f}  kl {kl.item():.3f}", flush=True)
    vae.eval()
    with torch.no_grad():
        posterior = vae.encode(x_all).latent_dist
        scale = 1.0 / posterior.sample(generator=gen).std().item()
        recon_rmse = (F.mse_loss(vae.decode(posterior.mode()).sample, x_all).item() / 4.0) ** 0.5
    vae.register_to_config(scaling_factor=scale)
    return vae, {"train_recon_rmse": recon_rmse, "scaling_factor": scale}


def ema_update(ema: list[torch.Tensor], params: Iterable[torch.Tensor], decay: float) -> None:
    """In-place ``ema = decay * ema + (1 - decay) * params``."""
    with torch.no_grad():
        for e, p in zip(ema, params):
            e.lerp_(p, 1.0 - decay)


def train_diffusion(
    train: DigitSplit, vae: AutoencoderKL, budget: Budget, seed: int = 2
) -> tuple[UNet2DConditionModel, CLIPTextModel, CLIPTokenizer, dict]:
    """Jointly fit the UNet and the text encoder with the epsilon-prediction loss; returns EMA weights."""
    torch.manual_seed(seed)
    tokenizer = dm.make_tokenizer()
    unet, text_encoder = dm.build_unet().train(), dm.build_text_encoder(tokenizer).train()
    alphas = dm.build_scheduler().alphas_cumprod
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        posterior = vae.encode(train.rgb() * 2.0 - 1.0).latent_dist
        mean, std = posterior.mean, posterior.std
    scale = vae.config["scaling_factor"]  # diffusers types config as a dict (a FrozenDict)
    labels = torch.from_numpy(train.labels)
    prompts = [t.format(d) for t in dm.PROMPT_TEMPLATES for d in range(10)] + [""]
    ids = tokenizer(prompts, padding="max_length", max_length=dm.MAX_TOKENS, truncation=True, return_tensors="pt")
    empty_id = len(prompts) - 1

    params = list(unet.parameters()) + list(text_encoder.parameters())
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2)
    batch = budget.diffusion_batch
    for step in range(budget.diffusion_steps):
        set_lr(opt, lr_at(step, budget.diffusion_steps, 1e-3))
        idx = torch.randint(0, len(labels), (batch,), generator=gen)
        latents = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)) * scale
        template = torch.randint(0, len(dm.PROMPT_TEMPLATES), (batch,), generator=gen)
        prompt_id = template * 10 + labels[idx]
        drop = torch.rand(batch, generator=gen) < CFG_DROPOUT
        prompt_id = torch.where(drop, torch.full_like(prompt_id, empty_id), prompt_id)
        noise = torch.randn(latents.shape, generator=gen)
        t = torch.randint(0, len(alphas), (batch,), generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * latents + (1.0 - a).sqrt() * noise
        emb = text_encoder(ids.input_ids).last_hidden_state[prompt_id]
        loss = F.mse_loss(unet(noisy, t, encoder_hidden_states=emb).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema_update(ema, params, min(EMA_DECAY, (1.0 + step) / (10.0 + step)))
        if log_every(step, budget.diffusion_steps, 20):
            print(f"  diffusion {step:5d}/{budget.diffusion_steps}  loss {loss.item():.4f}", flush=True)
    with torch.no_grad():
        for p, e in zip(params, ema):
            p.copy_(e)
    return unet.eval(), text_encoder.eval(), tokenizer, {"final_batch_loss": loss.item()}


def jitter(grey: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random affine jitter of grey images: shift <= 2 px, rotation <= 10 deg, scale 0.9-1.1; paper fill."""
    n = grey.shape[0]
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(10)
    scale = 0.9 + 0.2 * torch.rand(n, generator=gen)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * (2.0 / (grey.shape[-1] / 2))
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(grey.shape), align_corners=False)
    ink = F.grid_sample(1.0 - grey, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return 1.0 - ink


def accuracy(classify: Callable[[torch.Tensor], torch.Tensor], split: DigitSplit) -> float:
    """Fraction of ``split`` that ``classify`` (grey batch -> logits) labels correctly."""
    with torch.no_grad():
        pred = classify(torch.from_numpy(split.images).unsqueeze(1)).argmax(-1)
    return (pred == torch.from_numpy(split.labels)).float().mean().item()


def train_classifier(
    train: DigitSplit, held_out: DigitSplit, budget: Budget, seed: int = 3
) -> tuple[DigitClassifier, dict]:
    """Fit the reward classifier with mixup, jitter and weight decay; returns it (eval mode) and a log."""
    torch.manual_seed(seed)
    net = DigitClassifier().train()
    grey = torch.from_numpy(train.images).unsqueeze(1)
    labels = torch.from_numpy(train.labels)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=5e-2)
    gen = torch.Generator().manual_seed(seed)
    mix_rng = np.random.default_rng(seed)
    batch = budget.classifier_batch
    for step in range(budget.classifier_steps):
        set_lr(opt, lr_at(step, budget.classifier_steps, 3e-3))
        idx = torch.randint(0, len(labels), (batch,), generator=gen)
        lam = torch.from_numpy(mix_rng.beta(MIXUP_ALPHA, MIXUP_ALPHA, size=(batch, 1)).astype(np.float32))
        perm = torch.randperm(batch, generator=gen)
        x = jitter(grey[idx], gen)
        x = lam.view(-1, 1, 1, 1) * x + (1.0 - lam.view(-1, 1, 1, 1)) * x[perm]
        onehot = F.one_hot(labels[idx], 10).float()
        loss = F.cross_entropy(net(x), lam * onehot + (1.0 - lam) * onehot[perm])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if log_every(step, budget.classifier_steps, 5):
            print(f"  classifier {step:5d}/{budget.classifier_steps}  loss {loss.item():.4f}", flush=True)
    net.eval()
    log = {"train_accuracy": accuracy(net, train), "held_out_accuracy": accuracy(net, held_out)}
    return net, log


def train_all(out: Path, budget: Budget, quick_subset: bool = False) -> dict:
    """Train all stages and write the weights and ``pretrain_log.json`` to ``out``; returns the log."""
    start = time.perf_counter()
    train, held_out = load_splits()
    if quick_subset:
        train, held_out = (DigitSplit(s.images[:QUICK_IMAGES], s.labels[:QUICK_IMAGES]) for s in (train, held_out))
    print(f"digits: {len(train.labels)} train, {len(held_out.labels)} held out; {budget}", flush=True)

    times: dict[str, float] = {}
    t0 = time.perf_counter()
    vae, vae_log = train_vae(train, budget)
    times["autoencoder_s"] = time.perf_counter() - t0
    print(f"autoencoder: {times['autoencoder_s']:.0f} s, {vae_log}", flush=True)

    t0 = time.perf_counter()
    unet, text_encoder, tokenizer, diffusion_log = train_diffusion(train, vae, budget)
    times["diffusion_s"] = time.perf_counter() - t0
    print(f"diffusion: {times['diffusion_s']:.0f} s, {diffusion_log}", flush=True)

    t0 = time.perf_counter()
    classifier, classifier_log = train_classifier(train, held_out, budget)
    times["classifier_s"] = time.perf_counter() - t0
    print(f"classifier: {times['classifier_s']:.0f} s, {classifier_log}", flush=True)

    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    pipe = dm.assemble_pipeline(unet, vae, text_encoder, tokenizer)
    pipe.save_pretrained(out / "pipeline", safe_serialization=True)
    save_file({k: v.contiguous() for k, v in classifier.state_dict().items()}, str(out / CLASSIFIER_FILE))
    times["total_s"] = time.perf_counter() - start
    log = {
        "budget": asdict(budget),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "autoencoder": vae_log,
        "diffusion": diffusion_log,
        "classifier": classifier_log,
        "wall_time": {k: round(v, 1) for k, v in times.items()},
    }
    (out / "pretrain_log.json").write_text(json.dumps(log, indent=2) + "\n")
    print(f"wrote {out} in {times['total_s']:.0f} s wall", flush=True)
    return log


def pretrain_parser(module: str, doc: str, quick_help: str, threads: int) -> argparse.ArgumentParser:
    """The options both pretraining scripts take: ``--out``, ``--quick`` and ``--threads`` (default: as shipped)."""
    parser = argparse.ArgumentParser(prog=f"python -m draftsdk.demo.{module}", description=doc.split("\n")[0])
    parser.add_argument("--out", type=Path, default=dm.weights_dir(), help="output folder (default: shipped weights)")
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--threads", type=int, default=threads, help=f"torch CPU threads (default {threads}, as shipped)")
    return parser


@contextlib.contextmanager
def reproducible_torch(threads: int) -> Iterator[None]:
    """Run with ``threads`` CPU threads and torch's deterministic algorithms (e.g. the embedding and index
    backward passes), both restored on exit: same threads on the same CPU type, same weights."""
    before, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        torch.use_deterministic_algorithms(deterministic)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point. Sets torch's thread count and deterministic mode, restored on return."""
    args = pretrain_parser("pretrain", __doc__, "3 steps per stage on 64 images (smoke test)", threads=2).parse_args(argv)
    with reproducible_torch(args.threads):
        train_all(args.out, QUICK if args.quick else FULL, quick_subset=args.quick)


if __name__ == "__main__":
    main()
