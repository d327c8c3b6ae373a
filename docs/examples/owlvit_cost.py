"""Measure the OWL-ViT reward's cost per image on this machine (random weights, no download).

    python docs/examples/owlvit_cost.py            # tiny test detector and OWL-ViT B/32 at 768 px
    python docs/examples/owlvit_cost.py --owlv2    # also OWLv2 B/16 at 960 px (slow on a CPU)

Each configuration runs in a fresh process: the model is built from its default config with random
weights, saved with save_pretrained and loaded through the reward's own loading code; then the reward
scores 512x512 images (Stable Diffusion's output size) with and without a gradient to the pixels.
Times are the median of 3 runs after a warm-up; memory is the growth of the process's peak RSS over
the loaded model (activations and temporaries), so read it as an estimate.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _build(kind: str, folder: str) -> None:
    import torch
    from transformers import (
        OwlViTConfig,
        OwlViTForObjectDetection,
        OwlViTImageProcessor,
        OwlViTProcessor,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    from draftsdk.testing import tiny_clip_tokenizer

    torch.manual_seed(0)
    if kind == "tiny":
        tok = tiny_clip_tokenizer(1000, model_max_length=16)
        text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, max_position_embeddings=16, bos_token_id=tok.bos_token_id,
                    eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        vision = dict(image_size=64, patch_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4)
        model = OwlViTForObjectDetection(OwlViTConfig(text_config=text, vision_config=vision, projection_dim=32))
        size = {"height": 64, "width": 64}
        proc = OwlViTProcessor(image_processor=OwlViTImageProcessor(size=size, crop_size=size), tokenizer=tok)
    else:
        tok = tiny_clip_tokenizer(49408, model_max_length=16)  # the full CLIP BPE vocabulary, offline
        if kind == "owlvit-base-patch32":
            model = OwlViTForObjectDetection(OwlViTConfig())  # defaults = google/owlvit-base-patch32
            proc = OwlViTProcessor(image_processor=OwlViTImageProcessor(), tokenizer=tok)
        else:
            model = Owlv2ForObjectDetection(Owlv2Config())  # defaults = google/owlv2-base-patch16
            proc = Owlv2Processor(image_processor=Owlv2ImageProcessor(), tokenizer=tok)
    model.save_pretrained(folder)
    proc.save_pretrained(folder)


def _measure(folder: str, batch: int, grad: bool) -> dict[str, float]:
    import torch

    from draftsdk_owlvit import OwlViTReward

    t0 = time.perf_counter()
    reward = OwlViTReward(query="a strawberry", path=folder, device="cpu")
    load_s = time.perf_counter() - t0
    params = sum(p.numel() for p in reward.model.parameters())
    base = _peak_mb()
    images = torch.rand(batch, 3, 512, 512)
    prompts = ["a fruit bowl"] * batch
    times = []
    for _ in range(4):
        x = images.clone().requires_grad_(grad)
        t = time.perf_counter()
        if grad:
            reward(x, prompts).sum().backward()
        else:
            with torch.no_grad():
                reward(x, prompts)
        times.append(time.perf_counter() - t)
    return {
        "params_M": params / 1e6,
        "boxes": reward.box_scores(images[:1], prompts[:1]).shape[1],
        "input": reward.input_size[0],
        "load_s": load_s,
        "s_per_image": statistics.median(times[1:]) / batch,
        "extra_peak_MB_per_image": (_peak_mb() - base) / batch,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--owlv2", action="store_true", help="also measure OWLv2 B/16 (960 px, 3600 boxes)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--build", nargs=2, metavar=("KIND", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=3, metavar=("FOLDER", "BATCH", "GRAD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        _build(*args.build)
        return
    if args.child:
        folder, batch, grad = args.child
        print(json.dumps(_measure(folder, int(batch), grad == "1")))
        return
    import torch

    kinds = ["tiny", "owlvit-base-patch32"] + (["owlv2-base-patch16"] if args.owlv2 else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, batch {args.batch}, 512x512 images")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            folder = os.path.join(tmp, kind)
            subprocess.run([sys.executable, __file__, "--build", kind, folder], check=True, env=env, capture_output=True)
            for grad in ("0", "1"):
                out = subprocess.run([sys.executable, __file__, "--child", folder, str(args.batch), grad],
                                     check=True, env=env, capture_output=True, text=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                mode = "forward+backward" if grad == "1" else "forward (no grad)"
                print(f"{kind:22s} {r['params_M']:7.1f} M params, {r['input']} px, {r['boxes']:4d} boxes | "
                      f"{mode:18s}: {r['s_per_image']:.3f} s/image, +{r['extra_peak_MB_per_image']:.0f} MB/image "
                      f"(load {r['load_s']:.1f} s)")


if __name__ == "__main__":
    main()
