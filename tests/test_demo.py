"""`draftsdk demo`, shortened: it writes its files and the reward rises."""

from __future__ import annotations

import json

from draftsdk.cli import main


def test_short_demo_writes_files_and_raises_the_reward(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--steps", "8", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mean P(classified as 8) on the same seeds:" in printed
    for name in ("before_after.png", "reward_curve.png", "alpha_strip.png", "metrics.jsonl", "lora.safetensors", "summary.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 8 and summary["reward_queries"] == 8 * 8 * 3  # batch 8, LV: n + 1 = 3 images each
    assert summary["reward_after"] > summary["reward_before"] + 0.2
    assert summary["target_probability_before"] < 0.2
    assert 0.5 < summary["digit_likeness_after"]["pca_residual_ratio"] < 2.0

    # a second run replaces the previous demo instead of refusing
    assert main(["demo", "--steps", "1", "--output", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == 1


def test_demo_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep")
    assert main(["demo", "--steps", "1", "--output", str(tmp_path)]) == 2
    assert "exists and does not hold a previous demo; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "keep"
