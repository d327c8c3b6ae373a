"""The DRaFT trainer on tiny random pipelines: every variant improves a reward, truncation and
random K are real, resume is exact, metrics and checkpoints are written, bad input is refused."""

from __future__ import annotations

import json

import pytest
import torch

import draftsdk
from draftsdk import TrainConfig, Trainer
from draftsdk.config import ConfigError
from draftsdk.errors import DraftError


@pytest.fixture(scope="module")
def sd_path(tmp_path_factory):
    from draftsdk.testing import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("sd") / "pipe")


@pytest.fixture
def pipe(sd_path):
    return draftsdk.load_pipeline(str(sd_path))


def _cfg(tmp_path, **kw):
    base = dict(steps=3, batch_size=2, num_inference_steps=4, learning_rate=3e-2, output_dir=tmp_path / "run",
                progress=False, eval_every=1000, save_every=1000, eval_seeds=[0, 1])
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize(
    "variant, extra",
    [("draft", {}), ("draft-k", {"k": 2}), ("draft-random-k", {"k_range": (1, 3)}), ("draft-lv", {}), ("refl", {"refl_last_steps": 3}),
     ("ddpo", {"eta": 1.0, "learning_rate": 3e-2, "steps": 4, "batch_size": 4})],
)
def test_each_variant_raises_the_reward(pipe, tmp_path, variant, extra):
    cfg = _cfg(tmp_path, variant=variant, **extra)
    result = Trainer(pipe, "brightness", cfg).fit(["a cat", "a dog"])
    before, after = result.evals[0]["eval/mean"], result.evals[-1]["eval/mean"]
    assert after > before + 1e-4, (variant, before, after)
    assert result.steps_done == cfg.steps and result.lora_path.is_file()


def test_only_lora_changes_and_metrics_are_logged(pipe, tmp_path):
    base = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    vae = {k: v.clone() for k, v in pipe.vae.state_dict().items()}
    cfg = _cfg(tmp_path, variant="draft-lv", steps=2, eval_every=1)
    result = Trainer(pipe, {"brightness": 1.0, "contrast": 0.5}, cfg).fit(["a cat", "a dog"])
    after = pipe.unet.state_dict()
    for key, value in after.items():
        if "lora_" in key:
            continue
        assert torch.equal(value, base[key.replace(".base_layer", "")]), key
    assert any(v.abs().sum() > 0 for k, v in after.items() if "lora_B" in k)  # B starts at zero: it trained
    assert all(torch.equal(v, pipe.vae.state_dict()[k]) for k, v in vae.items())

    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in lines if r["kind"] == "train"]
    evals = [r for r in lines if r["kind"] == "eval"]
    assert [r["step"] for r in train] == [1, 2] and [r["step"] for r in evals] == [0, 1, 2]
    for key in ("loss", "reward/mean", "reward/std", "reward/brightness/mean", "reward/contrast/std", "grad_norm", "lr",
                "step_time", "peak_mem_gb", "diversity", "queries", "grad_steps", "skipped"):
        assert key in train[0], key
    assert train[1]["queries"] == 2 * 2 * 3  # batch 2, (n=2)+1 images per prompt, 2 updates
    assert (tmp_path / "run" / "samples" / "step-000002.png").is_file()
    assert (tmp_path / "run" / "checkpoints" / "step-000002" / "lora.safetensors").is_file()
    assert result.history == train


def test_random_k_is_drawn_once_per_rollout(pipe, tmp_path):
    trainer = Trainer(pipe, "brightness", _cfg(tmp_path, variant="draft-random-k", k_range=(1, 4)))
    draws = []
    original = trainer.rng.randint
    trainer.rng.randint = lambda a, b: draws.append(original(a, b)) or draws[-1]
    grad_calls = []
    pipe.unet.register_forward_hook(lambda m, i, o: grad_calls.append(torch.is_grad_enabled()))
    for _ in range(4):
        draws.clear()
        grad_calls.clear()
        rollout = trainer.rollout(["a", "b"])
        assert len(draws) == 1
        # checkpointing re-runs forward during backward only; here: one call per step, K of them with grad
        assert sum(grad_calls) == rollout.grad_steps == draws[0]
        assert len(grad_calls) == 4


def test_lv_batches_the_copies_and_reuses_the_final_latent(pipe, tmp_path):
    trainer = Trainer(pipe, "brightness", _cfg(tmp_path, variant="draft-lv", lv_copies=3))
    rollout = trainer.rollout(["a", "b"])
    assert rollout.images.shape[0] == 8 and rollout.prompts == ["a", "b"] * 4 and rollout.images.requires_grad
    assert rollout.grad_steps == 1


def test_resume_equals_an_uninterrupted_run(sd_path, tmp_path):
    def run(out, steps, resume=False):
        cfg = _cfg(tmp_path, variant="draft-k", k=2, steps=steps, save_every=2, output_dir=tmp_path / out, resume=resume)
        Trainer(draftsdk.load_pipeline(str(sd_path)), "brightness", cfg).fit(["a cat", "a dog", "a fox"])
        return draftsdk.lora.read_lora(tmp_path / out / "lora.safetensors").state_dict

    straight = run("straight", 4)
    run("resumed", 2)
    resumed = run("resumed", 4, resume=True)
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.allclose(straight[key], resumed[key], atol=1e-6), key
    steps = [json.loads(x)["step"] for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
             if json.loads(x)["kind"] == "train"]
    assert steps == [1, 2, 3, 4]


def test_nonfinite_steps_are_skipped_then_the_run_stops(pipe, tmp_path):
    class FlakyReward:
        name, differentiable = "flaky", True

        def __init__(self):
            self.calls = 0

        def __call__(self, images, prompts):
            self.calls += 1
            value = images.mean(dim=(1, 2, 3))
            return value if self.calls <= 2 else value * float("nan")

    cfg = _cfg(tmp_path, variant="draft-k", k=1, steps=6, max_nonfinite_steps=2, save_every=1)
    with pytest.raises(DraftError) as err:
        Trainer(pipe, FlakyReward(), cfg).fit(["a"])
    message = str(err.value)
    assert message.startswith("stopped at step 3: 2 updates in a row were skipped for NaN/inf, the last because the reward "
                              "returned NaN/inf ('flaky') on finite images; last good checkpoint: ")
    assert message.endswith("step-000001. Try a lower learning_rate (0.03), max_grad_norm, or mixed_precision='no'")
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped"] for r in lines if r["kind"] == "train"] == [False, True, True]


def test_non_differentiable_reward_suggests_ddpo(pipe, tmp_path):
    @draftsdk.reward(differentiable=False)
    def jpeg_size(images, prompts):
        return images.detach().mean(dim=(1, 2, 3))

    with pytest.raises(DraftError, match=r"reward term\(s\) jpeg-size are not differentiable, so variant='draft-lv' cannot "
                                         r"backpropagate through them; use variant='ddpo'"):
        Trainer(pipe, jpeg_size, _cfg(tmp_path))
    result = Trainer(pipe, jpeg_size, _cfg(tmp_path, variant="ddpo", eta=1.0, steps=1)).fit(["a"])
    assert result.steps_done == 1


def test_existing_run_dir_and_mismatched_resume_are_refused(pipe, tmp_path):
    Trainer(pipe, "brightness", _cfg(tmp_path, steps=1)).fit(["a"])
    with pytest.raises(DraftError, match="already exists and is not empty; pass resume=True"):
        Trainer(pipe, "brightness", _cfg(tmp_path, steps=2)).fit(["a"])
    with pytest.raises(DraftError, match=r"the run was started with other settings \(reward: .*brightness.* there, .*contrast.* here\)"):
        Trainer(pipe, "contrast", _cfg(tmp_path, steps=2, resume=True)).fit(["a"])


def test_kl_guard_is_logged(pipe, tmp_path):
    result = Trainer(pipe, "brightness", _cfg(tmp_path, variant="draft-k", k=2, steps=2, kl_weight=1.0)).fit(["a"])
    assert result.history[0]["kl"] == 0.0  # B starts at zero: the adapter equals the base model
    assert result.history[1]["kl"] > 0.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"variant": "draft-k", "k": 9}, "invalid config: k: k=9 is larger than num_inference_steps=4; use k <= num_inference_steps"),
        ({"lv_copies": 0}, "invalid config: lv_copies: Input should be greater than or equal to 1"),
        ({"learning_rate": -1}, "invalid config: learning_rate: Input should be greater than 0"),
        ({"variant": "draft-x"}, "invalid config: variant: unknown variant 'draft-x'. Did you mean 'draft-k' or 'draft'? "
                               "Registered: ddpo, draft, draft-k, draft-lv, draft-random-k, refl"),
        ({"prompts": [" "]}, "invalid config: prompts: the list is empty; give at least one prompt, a prompt_file or a prompt_set"),
        ({"negative_prompt": "ugly", "guidance_scale": 1.0}, "invalid config: guidance_scale: a negative_prompt needs guidance_scale > 1 (got 1.0); raise it or drop the negative prompt"),
        ({"lerning_rate": 1e-3}, "invalid config: lerning_rate: unknown setting; did you mean 'learning_rate'?"),
        ({"variant": "ddpo"}, "invalid config: eta: ddpo needs a stochastic sampler; set eta > 0 (DDPO uses 1.0)"),
    ],
)
def test_config_errors_name_the_field(tmp_path, kwargs, message):
    with pytest.raises(ConfigError) as err:
        _cfg(tmp_path, **kwargs)
    assert str(err.value) == message


def test_config_from_toml_and_yaml_with_overrides(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('variant = "draft-k"\nk = 3\n[rewards]\nbrightness = 1.0\n')
    cfg = TrainConfig.from_file(toml, ["k=2", "rewards.contrast={\"weight\": 0.5}"])
    assert cfg.k == 2 and cfg.rewards == {"brightness": 1.0, "contrast": {"weight": 0.5}}
    yaml = tmp_path / "run.yaml"
    yaml.write_text("variant: refl\nrefl_last_steps: 5\n")
    assert TrainConfig.from_file(yaml).refl_last_steps == 5
    (tmp_path / "bad.toml").write_text("k = [")
    with pytest.raises(ConfigError, match=r"config file '.*bad.toml' is not valid TOML"):
        TrainConfig.from_file(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match=r"invalid .*run.toml: k: Input should be greater than or equal to 1"):
        TrainConfig.from_file(toml, ["k=0"])


def test_not_a_pipeline_is_a_type_error(tmp_path):
    with pytest.raises(TypeError, match="is not a Stable Diffusion 1.x/2.x pipeline: missing"):
        Trainer(object(), "brightness", _cfg(tmp_path))


def test_gradient_contract_is_checked_on_the_first_training_step(pipe, tmp_path):
    class Detached:
        name, differentiable = "detached", True

        def __call__(self, images, prompts):
            return images.detach().mean(dim=(1, 2, 3))

    with pytest.raises(draftsdk.RewardContractError, match="'detached' .* says differentiable=True but its output has no gradient"):
        Trainer(pipe, Detached(), _cfg(tmp_path, variant="draft-k", k=1)).fit(["a"])


def test_resume_applies_this_runs_optimizer_settings(sd_path, tmp_path):
    Trainer(draftsdk.load_pipeline(str(sd_path)), "brightness", _cfg(tmp_path, variant="draft-k", k=1, steps=1)).fit(["a"])
    cfg = _cfg(tmp_path, variant="draft-k", k=1, steps=2, resume=True, learning_rate=1e-2, weight_decay=0.5)
    trainer = Trainer(draftsdk.load_pipeline(str(sd_path)), "brightness", cfg)
    result = trainer.fit(["a"])
    assert [h["lr"] for h in result.history] == [1e-2]
    assert trainer.optimizer.param_groups[0]["weight_decay"] == 0.5


def test_overwrite_replaces_the_previous_runs_artifacts(pipe, tmp_path):
    Trainer(pipe, "brightness", _cfg(tmp_path, variant="draft-k", k=1, steps=3, save_every=1, keep_checkpoints=5)).fit(["a"])
    (tmp_path / "run" / "notes.txt").write_text("mine")
    Trainer(pipe, "brightness", _cfg(tmp_path, variant="draft-k", k=1, steps=1, overwrite=True)).fit(["a"])
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000001"]
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    assert steps == [1]
    assert (run / "notes.txt").read_text() == "mine"  # only the run's own artifacts are replaced


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_gradient_accumulation_equals_one_big_batch(sd_path, tmp_path):
    """Two accumulated rollouts of B give the gradient of one rollout of 2B with the same prompts and noise."""
    noises = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    prompts = ["a cat", "a dog", "a fox", "a cow"]

    def grads(batch, accum, out):
        cfg = _cfg(tmp_path, variant="draft-k", k=2, batch_size=batch, grad_accum_steps=accum, output_dir=tmp_path / out,
                   max_grad_norm=None)
        trainer = Trainer(draftsdk.load_pipeline(str(sd_path)), "brightness", cfg)
        for p in trainer.params:  # non-zero B so every LoRA tensor gets a gradient
            p.data.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
        chunks = iter([(prompts[i:i + batch], noises[i:i + batch]) for i in range(0, 4, batch)])
        trainer.draw_batch = lambda _: next(chunks)
        trainer.optimizer.step = lambda *a, **k: None  # keep the weights: compare the gradients
        trainer.update(prompts)
        return [p.grad.clone() for p in trainer.params]

    for a, b in zip(grads(2, 2, "accum"), grads(4, 1, "big")):
        assert torch.allclose(a, b, atol=1e-6)


def test_bf16_autocast_step_runs_on_cpu(pipe, tmp_path):
    result = Trainer(pipe, "brightness", _cfg(tmp_path, variant="draft-k", k=1, steps=1, mixed_precision="bf16")).fit(["a"])
    assert pipe.unet.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in draftsdk.lora.lora_parameters(pipe.unet))
    assert result.history[0]["grad_norm"] > 0


def test_eval_rewards_are_logged_but_not_optimised(pipe, tmp_path):
    class Counting:
        name, differentiable = "counting", False
        calls = 0

        def __call__(self, images, prompts):
            Counting.calls += 1
            return images.std(dim=(1, 2, 3))

    cfg = _cfg(tmp_path, variant="draft-k", k=1, steps=2, eval_every=1)
    trainer = Trainer(pipe, "brightness", cfg, eval_rewards={Counting(): 1.0, "contrast": 1.0})  # one non-differentiable
    result = trainer.fit(["a cat", "a dog"])
    images, _ = trainer.evaluate(["a cat", "a dog"])
    assert [r["step"] for r in result.evals] == [0, 1, 2] and Counting.calls == 3  # once per evaluation
    last = result.evals[-1]
    assert last["eval/contrast"] == pytest.approx(float(images.mean(dim=1).flatten(1).std(dim=1, unbiased=False).mean()), rel=1e-5)
    assert "eval/counting" in last and "eval/counting/std" in last
    assert all("counting" not in key for key in result.history[-1])  # not part of the training objective
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["eval/contrast"] for r in lines if r["kind"] == "eval"] == [r["eval/contrast"] for r in result.evals]
