"""LoRA on every flow-matching family (SD3, FLUX.1, FLUX.2-Klein, Qwen-Image): an exported adapter
loads with the pipeline's own ``load_lora_weights`` and the pipeline's own call then draws what
draftsdk drew with it; and each family trains with every DRaFT variant. The sampling fidelity and
gradient checks of each family are in its own module."""

from __future__ import annotations

import pytest
from flow_helpers import latents, with_random_lora

import draftsdk
from draftsdk.lora import save_lora

SIZE = {"sd3": 16, "flux-dev": 32, "flux2-klein": 32, "qwenimage": 32}  # square images; 16 is SD3's tiny minimum
FAMILY = {"sd3": "sd3", "flux-dev": "flux", "flux2-klein": "flux2-klein", "qwenimage": "qwenimage"}


def _pipeline_call(pipe, name, prompts, latents, steps, size):
    """The diffusers pipeline's own sampling at the family's default guidance (its guidance argument and
    text length as draftsdk uses them: the tiny T5 has 32 tokens, the tiny Qwen tokenizers 64)."""
    guidance = draftsdk.models.get_family(FAMILY[name]).default_guidance
    if name == "qwenimage":  # true CFG, whose default negative prompt draftsdk also uses
        kw = {"true_cfg_scale": guidance, "negative_prompt": [" "] * len(prompts), "max_sequence_length": 64}
    else:
        kw = {"guidance_scale": guidance, "max_sequence_length": 64 if name == "flux2-klein" else 32}
    return pipe(prompt=prompts, num_inference_steps=steps, latents=latents, height=size, width=size, output_type="pt", **kw).images


@pytest.mark.parametrize("name", list(SIZE))
def test_exported_adapter_loads_with_the_pipelines_own_loader(flow_folder, tmp_path, name):
    folder, size = str(flow_folder(name)), SIZE[name]
    trained = draftsdk.load_pipeline(folder)
    with_random_lora(trained, scale=0.3)
    path = save_lora(tmp_path / "a.safetensors", trained.transformer, prefix="transformer")
    state = draftsdk.lora.read_lora(path).state_dict
    assert all(k.startswith("transformer.") for k in state)
    noise = latents(trained, 1, size, size, seed=2)
    ours = draftsdk.sample(trained, ["a fox"], num_inference_steps=3, latents=noise, height=size, width=size).images
    fresh = draftsdk.load_pipeline(folder)
    base = draftsdk.sample(fresh, ["a fox"], num_inference_steps=3, latents=noise, height=size, width=size).images
    fresh.load_lora_weights(str(path))
    assert sum(1 for n, _ in fresh.transformer.named_parameters() if "lora_" in n) == len(state)  # every tensor was placed
    theirs = _pipeline_call(fresh, name, ["a fox"], noise, 3, size)
    assert (ours - base).abs().max() > 1e-3  # the adapter changes the images...
    assert (theirs - ours).abs().max() <= 1e-4  # ...and diffusers applies it exactly as draftsdk trained it


@pytest.mark.parametrize("name", list(SIZE))
@pytest.mark.parametrize(
    "variant, extra",
    [("draft", {}), ("draft-k", {"k": 2}), ("draft-random-k", {"k_range": (1, 3)}), ("draft-lv", {}), ("refl", {"refl_last_steps": 2})],
)
def test_every_flow_family_trains_with_every_draft_variant(flow_folder, tmp_path, name, variant, extra):
    size = SIZE[name]
    cfg = draftsdk.TrainConfig(**{"variant": variant, "steps": 1, "batch_size": 2, "num_inference_steps": 3, "learning_rate": 0.2,
                                  "output_dir": tmp_path / "run", "progress": False, "eval_seeds": [0, 1], "height": size,
                                  "width": size, **extra})
    result = draftsdk.Trainer(str(flow_folder(name)), "brightness", cfg).fit(["a red cat", "a dog on a beach"])
    before, after = result.evals[0]["eval/mean"], result.evals[-1]["eval/mean"]
    assert after > before + 2e-5, (variant, before, after)  # one step of a LoRA that starts at zero: a small, clear rise
    info = draftsdk.lora.read_lora(result.lora_path)
    assert info.info["family"] == FAMILY[name] and info.prefix == "transformer"
