"""Measure the adversarial (ResNet-50) reward's cost per image on this machine (random weights, no download).

    python docs/examples/adversarial_cost.py

A random-weight torchvision ResNet-50 is saved as a local file and loaded through the reward's own
loading code. Every input is resized to 232 (short side) and cropped to 224, so the cost hardly
depends on the input size: 64x64 (test scale) and 512x512 (Stable Diffusion's output) are both
measured. Each configuration runs in a fresh process; times are the median of 3 runs after a
warm-up; memory is the growth of the process's peak RSS over the loaded model, an estimate.
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


def _measure(path: str, batch: int, size: int, grad: bool) -> dict[str, float]:
    import torch

    from draftsdk_adversarial import AdversarialReward

    t0 = time.perf_counter()
    reward = AdversarialReward(target=["tabby", "tiger cat"], path=path, device="cpu")
    load_s = time.perf_counter() - t0
    base = _peak_mb()
    images = torch.rand(batch, 3, size, size)
    prompts = ["a bear"] * batch
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
        "load_s": load_s,
        "s_per_image": statistics.median(times[1:]) / batch,
        "extra_peak_MB_per_image": (_peak_mb() - base) / batch,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--child", nargs=4, metavar=("PATH", "BATCH", "SIZE", "GRAD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        path, batch, size, grad = args.child
        print(json.dumps(_measure(path, int(batch), int(size), grad == "1")))
        return
    import torch
    from torchvision.models import resnet50

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, batch {args.batch}")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "resnet50-random.pth")
        torch.save(resnet50(weights=None).state_dict(), path)
        for size in (64, 512):
            for grad in ("0", "1"):
                out = subprocess.run([sys.executable, __file__, "--child", path, str(args.batch), str(size), grad],
                                     check=True, capture_output=True, text=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                mode = "forward+backward" if grad == "1" else "forward (no grad)"
                print(f"ResNet-50 25.6 M params, {size}x{size} input -> 224 | {mode:18s}: "
                      f"{r['s_per_image']:.3f} s/image, +{r['extra_peak_MB_per_image']:.0f} MB/image "
                      f"(load {r['load_s']:.2f} s)")


if __name__ == "__main__":
    main()
