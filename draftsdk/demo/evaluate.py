"""Independent evaluation of the digits world: does an image show the prompted digit, and is it digit-like?

``python -m draftsdk.demo.evaluate [--n-per-digit 50] [--steps 20] [--guidance 3.0] [--grid out.png]``
samples ``n`` images per digit from the shipped pipeline (DDIM, fixed seeds) and prints per-digit and
overall accuracy of the judge, the reward classifier's accuracy for comparison, and the likeness ratios.

- Judge (``DigitJudge.predict``): an RBF-kernel SVM (scikit-learn ``SVC(C=10, gamma="scale")``) fitted
  at construction, in about a second and deterministically, on the training split's 16x16 grey
  pixels. It is a different model family from the CNN behind the rewards and is not differentiable,
  so reward fine-tuning cannot climb its gradients.
- Digit-likeness (``DigitJudge.likeness``): the RMS residual of an image after projection onto the top 20
  principal components of the training digits, and the RMS distance to the nearest training digit;
  each reported as the ratio of the mean over the given images to the mean over the held-out real
  digits. 1.0 means "as digit-like as unseen real digits"; larger means less digit-like. The two
  complement each other: the PCA residual flags noise and artefacts (random pixels: 5.7) but not a
  blank page (0.6), which the nearest-neighbour distance flags (3.7).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from draftsdk.demo import model as dm
from draftsdk.demo.data import load_splits, to_grey

PCA_COMPONENTS = 20


def flat_grey(images: torch.Tensor) -> np.ndarray:
    """``(B, C, H, W)`` images in [0, 1] -> ``(B, 256)`` float64 grey pixels at 16x16."""
    with torch.no_grad():
        return to_grey(images.detach().float().cpu()).flatten(1).double().numpy()


class DigitJudge:
    """The independent evaluator (RBF SVM) and the digit-likeness measures, fitted on the training split."""

    def __init__(self) -> None:
        from sklearn.decomposition import PCA
        from sklearn.svm import SVC

        train, held_out = load_splits()
        self._train = train.images.reshape(len(train.labels), -1).astype(np.float64)
        self._svm = SVC(C=10.0, gamma="scale").fit(self._train, train.labels)
        self._pca = PCA(n_components=PCA_COMPONENTS, random_state=0).fit(self._train)
        real = held_out.images.reshape(len(held_out.labels), -1).astype(np.float64)
        self.held_out_accuracy = float((self._svm.predict(real) == held_out.labels).mean())
        self._ref_residual = float(self._residual(real).mean())
        self._ref_nn = float(self._nn_distance(real).mean())

    def predict(self, images: torch.Tensor) -> np.ndarray:
        """Predicted digit ``(B,)`` for ``(B, C, H, W)`` images in [0, 1]."""
        return self._svm.predict(flat_grey(images))

    def _residual(self, x: np.ndarray) -> np.ndarray:
        back = self._pca.inverse_transform(self._pca.transform(x))
        return np.sqrt(((x - back) ** 2).mean(axis=1))

    def _nn_distance(self, x: np.ndarray) -> np.ndarray:
        sq = (x**2).sum(1)[:, None] + (self._train**2).sum(1)[None, :] - 2.0 * x @ self._train.T
        return np.sqrt(np.maximum(sq.min(axis=1), 0.0) / x.shape[1])

    def likeness(self, images: torch.Tensor) -> dict[str, float]:
        """Mean PCA residual and nearest-neighbour distance of ``images``, relative to held-out real digits."""
        x = flat_grey(images)
        return {
            "pca_residual_ratio": float(self._residual(x).mean()) / self._ref_residual,
            "nn_distance_ratio": float(self._nn_distance(x).mean()) / self._ref_nn,
        }


def sample_digits(
    pipe: Any,
    n_per_digit: int,
    steps: int = dm.DEFAULT_STEPS,
    guidance: float = dm.DEFAULT_GUIDANCE,
    seed: int = 0,
    digits: tuple[int, ...] = tuple(range(10)),
) -> tuple[torch.Tensor, np.ndarray]:
    """Generate ``n_per_digit`` images for each digit (seed ``seed + digit``); returns images and labels."""
    images = []
    for d in digits:
        gen = torch.Generator().manual_seed(seed + d)
        out = pipe(
            [dm.prompt_for(d)] * n_per_digit,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=gen,
            output_type="pt",
        )
        images.append(out.images)
    labels = np.repeat(np.asarray(digits), n_per_digit)
    return torch.cat(images), labels


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: sample, judge and print a report."""
    parser = argparse.ArgumentParser(prog="python -m draftsdk.demo.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=dm.weights_dir(), help="weights folder (default: shipped)")
    parser.add_argument("--n-per-digit", type=int, default=50)
    parser.add_argument("--steps", type=int, default=dm.DEFAULT_STEPS)
    parser.add_argument("--guidance", type=float, default=dm.DEFAULT_GUIDANCE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid", type=Path, default=None, help="also save the samples as a PNG grid")
    args = parser.parse_args(argv)

    from draftsdk.demo.classifier import CLASSIFIER_FILE, load_classifier

    torch.set_num_threads(2)
    judge = DigitJudge()
    pipe = dm.load_pipeline(path=args.weights / "pipeline")
    t0 = time.perf_counter()
    images, labels = sample_digits(pipe, args.n_per_digit, args.steps, args.guidance, args.seed)
    seconds = time.perf_counter() - t0
    judged = judge.predict(images)
    with torch.no_grad():
        rewarded = load_classifier(args.weights / CLASSIFIER_FILE).log_probs(images).argmax(-1).numpy()
    print(f"{len(labels)} samples, {args.steps} DDIM steps, guidance {args.guidance}, seed {args.seed}: "
          f"{seconds:.1f} s")
    print(f"judge (RBF SVM) held-out accuracy on real digits: {judge.held_out_accuracy:.3f}")
    print("digit  judge  reward-classifier")
    for d in range(10):
        m = labels == d
        print(f"{d:5d}  {(judged[m] == d).mean():.3f}  {(rewarded[m] == d).mean():.3f}")
    print(f"  all  {(judged == labels).mean():.3f}  {(rewarded == labels).mean():.3f}")
    for key, value in judge.likeness(images).items():
        print(f"{key}: {value:.3f}  (held-out real digits = 1.000)")
    if args.grid is not None:
        from draftsdk.images import make_grid, save_png

        save_png(make_grid(images, args.n_per_digit, row_labels=[str(d) for d in range(10)], scale=4), args.grid)
        print(f"wrote {args.grid}")


if __name__ == "__main__":
    main()
