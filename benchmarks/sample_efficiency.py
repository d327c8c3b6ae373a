"""Sample efficiency: reward queries each method needs to reach a target reward, in the digits world.

    python benchmarks/sample_efficiency.py              # all methods, 3 training seeds (tens of minutes on 2 cores)
    python benchmarks/sample_efficiency.py --quick      # seconds; run by the test suite

The seed's headline claim in miniature: DRaFT variants against DDPO (policy gradient) on the same
reward (``digit-target``: log-probability that prompt-3 images are read as an 8), the same prompts,
model and evaluation seeds. "Queries" counts every image the reward scores during training
(DRaFT-LV scores n + 1 images per prompt; evaluations are not counted). Progress is the mean target
probability on fixed evaluation seeds, measured every few updates; "queries to target" is the first
evaluation at or above ``--target``, and the median over training seeds is reported.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, write_result  # noqa: E402

import draftsdk  # noqa: E402
from draftsdk.demo import model as digits  # noqa: E402
from draftsdk.images import plot_lines, save_png  # noqa: E402

METHODS: dict[str, dict[str, Any]] = {
    "DRaFT-1": {"variant": "draft-k", "k": 1},
    "DRaFT-K (K=2)": {"variant": "draft-k", "k": 2},
    "DRaFT-K (K=5)": {"variant": "draft-k", "k": 5},
    "full DRaFT": {"variant": "draft"},
    "DRaFT-LV (n=2)": {"variant": "draft-lv", "lv_copies": 2},
    "ReFL (m=5)": {"variant": "refl", "refl_last_steps": 5},
    "DDPO": {"variant": "ddpo", "eta": 1.0, "ddpo_train_fraction": 0.25},
}


def run(method: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    settings = dict(METHODS[method])
    is_ddpo = settings["variant"] == "ddpo"
    steps = args.ddpo_steps if is_ddpo else args.steps
    config = draftsdk.TrainConfig(
        **settings,
        prompts=[digits.prompt_for(args.digit)],
        num_inference_steps=digits.DEFAULT_STEPS,
        guidance_scale=digits.DEFAULT_GUIDANCE,
        steps=steps,
        batch_size=args.ddpo_batch if is_ddpo else args.batch,
        learning_rate=args.ddpo_lr if is_ddpo else args.lr,
        lora_rank=4,
        weight_decay=0.0,
        eval_seeds=list(range(args.eval_seeds)),
        eval_every=args.eval_every,
        save_every=10**6,
        seed=seed,
        output_dir=Path(tempfile.mkdtemp()) / "run",
        progress=False,
        tensorboard=False,
        device="cpu",
    )
    pipe = draftsdk.load_pipeline("draftsdk:digits")
    objective = draftsdk.combine({"digit-target": {"options": {"target": args.target_digit}}})
    trainer = draftsdk.Trainer(pipe, objective, config)
    queries_at: dict[int, int] = {0: 0}
    t0 = time.perf_counter()
    result = trainer.fit(on_step=lambda record: queries_at.__setitem__(record["step"], record["queries"]))
    curve = [(queries_at[e["step"]], math.exp(e["eval/mean"]), e["step"]) for e in result.evals]
    reached = next((q for q, p, _ in curve if p >= args.target), None)
    return {"method": method, "seed": seed, "curve": curve, "queries_to_target": reached,
            "queries_total": curve[-1][0], "seconds": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of: " + ", ".join(METHODS))
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per method")
    parser.add_argument("--digit", type=int, default=3)
    parser.add_argument("--target-digit", type=int, default=8)
    parser.add_argument("--target", type=float, default=0.5, help="mean target probability to reach")
    parser.add_argument("--steps", type=int, default=60, help="updates per DRaFT run")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--ddpo-steps", type=int, default=100)
    parser.add_argument("--ddpo-batch", type=int, default=16)
    parser.add_argument("--ddpo-lr", type=float, default=3e-3)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--eval-seeds", type=int, default=16)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    if args.quick:
        methods, args.seeds, args.steps, args.ddpo_steps, args.eval_every, args.eval_seeds = (
            ["DRaFT-1", "DRaFT-LV (n=2)", "DDPO"], 1, 2, 2, 1, 2)
        args.ddpo_batch = 4
    runs = [run(m, s, args) for m in methods for s in range(args.seeds)]

    lines = [f"Target: mean P(prompt-{args.digit} image read as {args.target_digit}) >= {args.target} "
             f"on {args.eval_seeds} fixed evaluation seeds; median over {args.seeds} training seeds.\n",
             "| method | queries to target (median) | per seed | final P(target) (median) | queries run | s/run |",
             "|---|---|---|---|---|---|"]
    medians: dict[str, float | None] = {}
    series = {}
    for method in methods:
        mine = [r for r in runs if r["method"] == method]
        reached = [r["queries_to_target"] for r in mine]
        done = [q for q in reached if q is not None]
        medians[method] = statistics.median(reached) if len(done) == len(reached) else None
        per_seed = ", ".join("—" if q is None else str(q) for q in reached)
        final = statistics.median(r["curve"][-1][1] for r in mine)
        shown = f"{medians[method]:g}" if medians[method] is not None else f"not reached (> {max(r['queries_total'] for r in mine)})"
        lines.append(f"| {method} | {shown} | {per_seed} | {final:.3f} | {mine[0]['queries_total']} | "
                     f"{statistics.median(r['seconds'] for r in mine):.0f} |")
        xs = [q for q, _, _ in mine[0]["curve"]]
        ys = [statistics.median(r["curve"][i][1] for r in mine) for i in range(len(xs))]
        series[method] = (xs, ys)
    ratios = []
    one, lv, ddpo = medians.get("DRaFT-1"), medians.get("DRaFT-LV (n=2)"), medians.get("DDPO")
    if one and lv:
        ratios.append(f"DRaFT-LV / DRaFT-1 queries: {lv / one:.2f}x")
    if one and ddpo:
        ratios.append(f"DDPO / DRaFT-1 queries: {ddpo / one:.1f}x")
    elif one and "DDPO" in methods:
        most = max(r["queries_total"] for r in runs if r["method"] == "DDPO")
        ratios.append(f"DDPO did not reach the target within {most} queries: DDPO / DRaFT-1 > {most / one:.1f}x")
    table = "\n".join(lines + [""] + ratios)
    print(table)
    if not args.no_save:
        chart = plot_lines(series, title=f"digits world: P(read as {args.target_digit}) vs reward queries (median of {args.seeds} seeds)",
                           xlabel="reward queries (images scored in training)", ylabel="P(target)",
                           hlines={f"target {args.target}": args.target}, size=(760, 460))
        save_png(chart, RESULTS / "sample_efficiency.png")
        path = write_result("sample_efficiency", {"settings": vars(args), "methods": methods, "runs": runs,
                                                  "median_queries_to_target": medians}, table)
        print(f"\nwrote {path} and {RESULTS / 'sample_efficiency.png'}")


if __name__ == "__main__":
    main()
