"""LoRA lifecycle: export readable by plain diffusers, load, scale, exact mixing, bad files."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
import torch

import draftsdk
from draftsdk import lora
from draftsdk.lora import LoraError
from draftsdk.testing import save_tiny_pipeline, tiny_pipeline


@pytest.fixture(scope="module")
def sd_path(tmp_path_factory):
    return save_tiny_pipeline(tmp_path_factory.mktemp("sd") / "pipe")


def _trained(sd_path, seed, rank=4, alpha=None, targets=lora.DEFAULT_TARGETS):
    pipe = draftsdk.load_pipeline(str(sd_path))
    params = lora.add_lora(pipe.unet, rank=rank, alpha=alpha, targets=targets)
    gen = torch.Generator().manual_seed(seed)
    for p in params:
        p.data = torch.randn(p.shape, generator=gen) * 0.3
    return pipe


def _images(pipe, seed=0):
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(seed))
    return draftsdk.sample(pipe, ["a cat", "a dog"], num_inference_steps=5, latents=noise).images


def _deltas(unet, adapter):
    """Effective ΔW = scaling * B @ A of every adapted module, read from peft's layers."""
    out = {}
    for name, module in unet.named_modules():
        if hasattr(module, "lora_A") and adapter in module.lora_A:
            a, b = module.lora_A[adapter].weight, module.lora_B[adapter].weight
            out[name] = module.scaling[adapter] * (b @ a)
    return out


def test_export_round_trip_through_plain_diffusers(sd_path, tmp_path):
    pipe = _trained(sd_path, 1, rank=4, alpha=8)
    trained = _images(pipe)
    path = lora.save_lora(tmp_path / "a.safetensors", pipe.unet, base_model=str(sd_path),
                          reward_spec=[{"name": "brightness", "weight": 1.0}], train_config={"steps": 3})
    code = f"""
import torch, sys
from diffusers import StableDiffusionPipeline
assert "draftsdk" not in sys.modules
pipe = StableDiffusionPipeline.from_pretrained({str(sd_path)!r}, safety_checker=None, requires_safety_checker=False)
pipe.set_progress_bar_config(disable=True)
pipe.load_lora_weights({str(path)!r}, adapter_name="mine")
noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
out = pipe(["a cat", "a dog"], num_inference_steps=5, latents=noise, output_type="pt").images
torch.save(out, {str(tmp_path / 'out.pt')!r})
"""
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    plain = torch.load(tmp_path / "out.pt", weights_only=True)
    assert torch.allclose(plain, trained, atol=1e-5)
    base = _images(draftsdk.load_pipeline(str(sd_path)))
    assert (plain - base).abs().max() > 1e-3  # the file really changes the model

    info = lora.read_lora(path)
    # alpha/r = 2 is folded into B: the header says alpha = r, and the weights alone are the trained update,
    # so a loader that ignores the header's alpha (diffusers < 0.34, ComfyUI) applies it at the right scale
    assert (info.rank, info.alpha, sorted(info.targets)) == (4, 4.0, sorted(lora.DEFAULT_TARGETS))
    assert info.info["trained_alpha"] == 8
    deltas = _deltas(pipe.unet, lora.ADAPTER_NAME)
    for module, (down, up) in info.modules().items():
        assert torch.allclose(up @ down, deltas[module.removeprefix("unet.")], atol=1e-6), module
    resumed = draftsdk.load_pipeline(str(sd_path))
    lora.add_lora(resumed.unet, rank=4, alpha=8)
    lora.restore_lora(resumed.unet, path)  # back into an alpha = 8 adapter (a resume): the same update
    again = _deltas(resumed.unet, lora.ADAPTER_NAME)
    assert all(torch.allclose(again[k], deltas[k], atol=1e-6) for k in deltas)
    assert info.info["base_model"] == str(sd_path)
    assert info.fingerprint == info.info["denoiser_fingerprint"] == lora.denoiser_fingerprint(pipe.unet)
    assert info.info["reward"] == [{"name": "brightness", "weight": 1.0}]
    assert info.info["train_config"] == {"steps": 3} and info.info["version"] == draftsdk.__version__


def test_scale_zero_is_the_base_model_and_one_the_trained(sd_path, tmp_path):
    trained_pipe = _trained(sd_path, 2)
    trained = _images(trained_pipe)
    path = lora.save_lora(tmp_path / "b.safetensors", trained_pipe.unet)
    base = _images(draftsdk.load_pipeline(str(sd_path)))
    pipe = draftsdk.load_pipeline(str(sd_path))
    name = lora.load_lora(pipe, path, "b")
    lora.scale(pipe, name, 0.0)
    assert torch.equal(_images(pipe), base)
    lora.scale(pipe, name, 1.0)
    assert torch.allclose(_images(pipe), trained, atol=1e-5)
    lora.scale(pipe, name, 0.5)
    half = _images(pipe)
    assert not torch.allclose(half, base, atol=1e-4) and not torch.allclose(half, trained, atol=1e-4)
    with pytest.warns(UserWarning, match=r"LoRA 'b' scaled by 3: beyond ±1.5 this extrapolates"):
        lora.scale(pipe, name, 3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lora.scale(pipe, name, -1.0)  # mild extrapolation: allowed silently


def test_mix_is_exact_across_ranks_alphas_and_targets(sd_path, tmp_path):
    a = _trained(sd_path, 3, rank=4, alpha=8)
    b = _trained(sd_path, 4, rank=2, alpha=1, targets=("to_q", "to_v"))
    path_a = lora.save_lora(tmp_path / "a.safetensors", a.unet)
    path_b = lora.save_lora(tmp_path / "b.safetensors", b.unet)
    mixed = lora.mix_files([(path_a, 0.7), (path_b, -0.5)], tmp_path / "mix.safetensors")
    info = lora.read_lora(mixed)
    assert info.rank == 6 and info.alpha == 6
    assert [m["weight"] for m in info.info["mix"]] == [0.7, -0.5]

    pipe = draftsdk.load_pipeline(str(sd_path))
    lora.load_lora(pipe, mixed, "mix")
    got = _deltas(pipe.unet, "mix")
    da, db = _deltas(a.unet, "draftsdk"), _deltas(b.unet, "draftsdk")
    assert set(got) == set(da)
    for module, delta in got.items():
        expected = 0.7 * da[module] + (-0.5 * db[module] if module in db else 0)
        assert torch.allclose(delta, expected, atol=1e-6), module

    # averaging the factors instead would not be the sum of the deltas
    wrong = 0.5 * (da[next(iter(db))] + db[next(iter(db))])
    assert not torch.allclose(wrong, got[next(iter(db))], atol=1e-3)

    # the same mix at inference with set_adapters gives the same images
    both = draftsdk.load_pipeline(str(sd_path))
    lora.load_lora(both, path_a, "a")
    lora.load_lora(both, path_b, "b")
    lora.set_mix(both, {"a": 0.7, "b": -0.5})
    assert torch.allclose(_images(both), _images(pipe), atol=1e-5)


def test_lora_for_another_model_names_module_and_shapes(tmp_path):
    other = tiny_pipeline(cross_attention_dim=16)
    lora.add_lora(other.unet, rank=4)
    path = lora.save_lora(tmp_path / "other.safetensors", other.unet)
    with pytest.raises(LoraError) as err:
        lora.load_lora(tiny_pipeline(), path)
    assert str(err.value) == (
        "other.safetensors does not fit this model: module 'down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k' "
        "has weight (64, 32) but the LoRA has down (4, 16) / up (64, 4) (a LoRA for another base model?)"
    )
    mine = tiny_pipeline()
    lora.add_lora(mine.unet, rank=4)
    mine_path = lora.save_lora(tmp_path / "mine.safetensors", mine.unet)
    with pytest.raises(LoraError, match=r"mix: the adapters were trained on different base models \(denoiser fingerprints"):
        lora.mix_files([(mine_path, 1.0), (path, 1.0)], tmp_path / "x.safetensors")


def test_pickles_refused_unless_trusted_then_weights_only(sd_path, tmp_path):
    pipe = _trained(sd_path, 5)
    path = lora.save_lora(tmp_path / "c.safetensors", pipe.unet)
    state = lora.read_lora(path).state_dict
    torch.save(state, tmp_path / "c.bin")
    with pytest.raises(LoraError) as err:
        lora.read_lora(tmp_path / "c.bin")
    assert str(err.value).endswith("is a pickle file, which can run code when loaded; convert it to safetensors, "
                                   "or pass trust_pickle=True (--trust-pickle) if you trust its source")
    assert lora.read_lora(tmp_path / "c.bin", trust_pickle=True).rank == 4

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(LoraError, match="cannot read .* with weights_only=True"):
        lora.read_lora(tmp_path / "evil.pt", trust_pickle=True)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda t: lora.read_lora(t / "missing.safetensors"), "LoRA file '{t}/missing.safetensors' does not exist"),
        (lambda t: lora.parse_weighted_path("a.safetensors:heavy"), "'a.safetensors:heavy': expected FILE:WEIGHT with a number after the colon, got 'heavy'"),
        (lambda t: lora.parse_weighted_path(":0.5"), "':0.5': missing file name before the colon"),
        (lambda t: lora.mix_files([], t / "o.safetensors"), "mix: no input files given; pass at least one FILE:WEIGHT"),
        (lambda t: lora.mix_files([(t / "a", 0.0), (t / "b", 0.0)], t / "o.safetensors"), "mix: all weights are zero; the mix would be the base model"),
    ],
)
def test_bad_lora_input(tmp_path, call, message):
    with pytest.raises(LoraError) as err:
        call(tmp_path)
    assert str(err.value) == message.format(t=tmp_path)


def test_not_a_safetensors_file(tmp_path):
    (tmp_path / "x.safetensors").write_text("hello")
    with pytest.raises(LoraError, match=r"'.*x.safetensors' is not a readable safetensors file"):
        lora.read_lora(tmp_path / "x.safetensors")


def test_cli_mix_info_and_sample_grid(sd_path, tmp_path, cli):
    a = lora.save_lora(tmp_path / "a.safetensors", _trained(sd_path, 6).unet)
    b = lora.save_lora(tmp_path / "b.safetensors", _trained(sd_path, 7).unet)
    out = cli("lora", "mix", f"{a}:0.7", f"{b}:0.5", "-o", str(tmp_path / "m.safetensors"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("rank 8")
    info = json.loads(cli("lora", "info", str(tmp_path / "m.safetensors")).stdout)
    assert info["rank"] == 8 and len(info["mix"]) == 2

    args = ["sample", "--model", str(sd_path), "--lora", f"{a}", "--prompt", "a cat", "--seeds", "0,1",
            "--scales", "0,0.5,1", "--steps", "4"]
    first = cli(*args, "-o", str(tmp_path / "g1.png"))
    second = cli(*args, "-o", str(tmp_path / "g2.png"))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith("(2 rows x 3 columns)")
    assert (tmp_path / "g1.png").read_bytes() == (tmp_path / "g2.png").read_bytes()

    bad = cli("sample", "--model", str(sd_path), "--lora", f"{a}:x", "--prompt", "p", "-o", str(tmp_path / "g.png"))
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "expected FILE:WEIGHT" in bad.stderr
    missing = cli("lora", "mix", str(tmp_path / "nope.safetensors"), "-o", str(tmp_path / "o.safetensors"))
    assert missing.stderr.strip() == f"error: LoRA file '{tmp_path}/nope.safetensors' does not exist"
