"""benchmarks/gpu_suite.py stays runnable: its ``--tiny`` mode end to end (CPU, toy pipelines), plus its helpers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_suite  # noqa: E402

CONFIGS = {
    "sd15": ["pipeline call (no grad)", "draftsdk sampler (no grad)", "DRaFT-1", "DRaFT-LV (n=2)", "full DRaFT (K=4)",
             "DRaFT-1, compile", "DRaFT-LV (n=2), compile"],
    "sdxl": ["pipeline call (no grad)", "DRaFT-1"],
    "flux": ["pipeline call (no grad)", "DRaFT-1"],
}


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_tiny_suite_end_to_end(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), "--tiny", "--out", str(tmp_path)],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    payload = json.loads((tmp_path / "tiny-cpu.json").read_text())
    markdown = (tmp_path / "tiny-cpu.md").read_text()
    assert payload["mode"] == "tiny" and "--tiny" in payload["command"]
    assert payload["machine"]["torch"] == torch.__version__ and payload["machine"]["diffusers"]
    # every section ran every configuration at every batch
    assert list(payload["sections"]) == ["sd15", "sdxl", "flux"]
    for key, section in payload["sections"].items():
        assert section["status"] == "ok", (key, section["status"])
        got = [(r["batch"], r["config"]) for r in section["rows"]]
        assert got == [(b, c) for b in section["batches"] for c in CONFIGS[key]], got
        for row in section["rows"]:
            assert row["status"] == "ok" and not row.get("note"), row
            assert all(_positive(row[k]) for k in ("median_s", "vs_pipeline", "images_per_s", "peak_gib")), row
            assert row["images_per_s"] == pytest.approx(row["batch"] / row["median_s"])
            if row["config"] == "pipeline call (no grad)":
                assert row["vs_pipeline"] == 1.0
    # the full-size configs (built on the meta device) have the published parameter counts
    counts = payload["architectures"]
    assert counts["sd15"]["unet"]["params"] == 859_520_964 and counts["flux"]["transformer"]["params"] == 11_901_408_320
    assert all(c["matches"] for arch in counts.values() for c in arch.values()), counts
    # the four targets are evaluated from the SD-1.5 rows
    targets = payload["targets"]
    assert len(targets) == 4 and all(t["status"] in ("PASS", "FAIL") and _positive(t["value"]) for t in targets), targets
    for t in targets:
        assert f"{t['status']:4}  {t['target']}" in out.stdout
    # the table is printed and stored
    table = payload["table"].splitlines()
    assert len(table) == 2 + sum(len(s["rows"]) for s in payload["sections"].values())
    assert all(line in out.stdout for line in table) and all(line in markdown for line in table)
    assert f"Command: `{payload['command']}`" in markdown
    assert payload["elapsed_s"] < payload["settings"]["budget_s"]


def test_evaluate_targets():
    rows = [
        {"batch": 16, "config": "pipeline call (no grad)", "median_s": 5.0, "peak_gib": 4.0},
        {"batch": 16, "config": "DRaFT-1", "median_s": 5.4, "images_per_s": 16 / 5.4, "peak_gib": 20.0},
        {"batch": 16, "config": "DRaFT-LV (n=2)", "median_s": 6.5, "peak_gib": 21.0},
        {"batch": 16, "config": "full DRaFT (K=50)", "peak_gib": 20.5},
        {"batch": 4, "config": "DRaFT-1", "median_s": 1.0, "images_per_s": 4.0, "peak_gib": 8.0},
    ]
    result = {t["target"].split(" (")[0]: t for t in gpu_suite.evaluate_targets(rows, 16)}
    assert result["DRaFT-1 step / pipeline call"]["value"] == pytest.approx(1.08)
    assert result["DRaFT-1 step / pipeline call"]["status"] == "PASS"
    assert result["DRaFT-1 images/s"]["status"] == "FAIL"  # 2.96 < 4
    assert result["full DRaFT peak / DRaFT-1 peak"]["status"] == "PASS"  # 1.025
    assert result["DRaFT-LV step / DRaFT-1 step"]["status"] == "FAIL"  # 1.20
    missing = gpu_suite.evaluate_targets([r for r in rows if not r["config"].startswith("full")], 16)
    assert [t["status"] for t in missing] == ["PASS", "FAIL", "N/A", "FAIL"]
    assert "not measured" in gpu_suite.render_targets(missing)


def test_helpers():
    assert gpu_suite.slug("NVIDIA H200") == "nvidia-h200" and gpu_suite.slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert gpu_suite.is_oom(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert gpu_suite.is_oom(RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"))
    assert not gpu_suite.is_oom(ValueError("bad shape"))
    budget = gpu_suite.Budget(10.0, start=gpu_suite.time.perf_counter())
    assert budget.allows(5.0) and not budget.allows(5.0, reserve=6.0) and not budget.allows(11.0)
    tokenizer = gpu_suite.byte_level_clip_tokenizer()  # no open_clip: what the GPU machine uses
    ids = tokenizer(["a photo of a cat"], padding="max_length", max_length=77, truncation=True).input_ids[0]
    assert len(tokenizer) == 49408 and len(ids) == 77 and ids[0] == tokenizer.bos_token_id and max(ids) < 49408


def test_budget_skips_sections(tmp_path):
    args = gpu_suite.parse_args(["--tiny", "--sections", "sd15,flux"])
    plan = gpu_suite.suite(args)
    assert [s.key for s in plan] == ["sd15", "flux"] and plan[0].reserve_s == plan[1].min_s and plan[1].reserve_s == 0
    spent = gpu_suite.Budget(0.0)
    result = gpu_suite.run_section(plan[0], args, spent, tmp_path)  # nothing is built
    assert result["status"] == "skipped (time budget)" and result["rows"] == []
    assert "skipped (time budget)" in gpu_suite.render_table({"sd15": result})
