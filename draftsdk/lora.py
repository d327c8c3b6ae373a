"""LoRA adapters: attach for training, export in diffusers format, load, scale and mix.

Files are diffusers-format LoRA safetensors: peft keys under the denoiser's prefix
(``unet.<module>.lora_A/lora_B.weight`` for SD and SDXL, ``transformer.`` for transformer families)
plus diffusers' ``lora_adapter_metadata`` header, so the family's own pipeline loads them with a
plain ``pipe.load_lora_weights(path)``. Every module uses the same key style, whatever the targets
(attention, ``proj_in``/``proj_out``, feed-forward). draftsdk adds a ``draftsdk`` header entry: the
base model, a fingerprint of the denoiser's shapes, rank/alpha/targets, the reward spec, the
training config and its version.

Scaling ``θ_pre + α·ΔW`` interpolates between the base (α = 0) and the fine-tuned model (α = 1);
mixing adds several adapters. [mix_files][draftsdk.lora.mix_files] writes one adapter whose effect
is exactly ``Σ w_i·(α_i/r_i)·B_i·A_i`` by concatenating along the rank dimension (averaging the A
and B factors separately would be wrong: the product is not linear in them).

Examples:
    >>> import tempfile, draftsdk
    >>> from draftsdk.testing import tiny_pipeline
    >>> pipe = tiny_pipeline()
    >>> params = draftsdk.lora.add_lora(pipe.unet, rank=4)
    >>> path = draftsdk.lora.save_lora(tempfile.mkdtemp() + "/a.safetensors", pipe.unet)
    >>> draftsdk.lora.read_lora(path).rank
    4
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import DraftError

__all__ = [
    "ADAPTER_NAME",
    "DEFAULT_TARGETS",
    "LoraError",
    "LoraFile",
    "add_lora",
    "check_compatible",
    "lora_parameters",
    "denoiser_fingerprint",
    "save_lora",
    "read_lora",
    "load_lora",
    "restore_lora",
    "scale",
    "set_mix",
    "mix_files",
    "parse_weighted_path",
]

ADAPTER_NAME = "draftsdk"
DEFAULT_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
DENOISER_PREFIXES = ("unet", "transformer")
EXTRAPOLATION_WARNING = 1.5


class LoraError(DraftError, ValueError):
    """A LoRA file is unreadable, for another model, or cannot be mixed."""


def add_lora(
    unet: Any,
    rank: int = 8,
    alpha: float | None = None,
    targets: Sequence[str] = DEFAULT_TARGETS,
    adapter_name: str = ADAPTER_NAME,
) -> list[torch.nn.Parameter]:
    """Freeze ``unet`` and attach a trainable peft LoRA adapter (``unet.add_adapter``).

    ``alpha`` defaults to ``rank`` (scale 1). A is Gaussian-initialised and B zero, so the model is
    unchanged until the first update. Returns the trainable parameters.
    """
    from peft import LoraConfig

    unet.requires_grad_(False)
    config = LoraConfig(  # peft annotates lora_alpha as int; it is only divided by r, a float is fine
        r=rank, lora_alpha=alpha if alpha is not None else rank, init_lora_weights="gaussian", target_modules=list(targets)  # type: ignore[arg-type]
    )
    try:
        unet.add_adapter(config, adapter_name=adapter_name)
    except ValueError as exc:
        raise LoraError(f"cannot attach LoRA to targets {list(targets)}: {str(exc).splitlines()[0]}") from None
    return lora_parameters(unet, adapter_name)


def lora_parameters(unet: Any, adapter_name: str = ADAPTER_NAME) -> list[torch.nn.Parameter]:
    """The parameters of one adapter (marked trainable)."""
    marker = f".{adapter_name}."
    params = [p for n, p in unet.named_parameters() if "lora_" in n and marker in n]
    for p in params:
        p.requires_grad_(True)
    return params


def denoiser_fingerprint(model: Any) -> str:
    """A short hash of the denoiser's base parameter names and shapes (identifies the architecture)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if "lora_" in name:
            continue
        digest.update(f"{name.replace('.base_layer', '')}:{tuple(tensor.shape)};".encode())
    return digest.hexdigest()[:16]



def _adapter_config(unet: Any, adapter_name: str) -> dict[str, Any]:
    config = unet.peft_config[adapter_name].to_dict()
    return {k: sorted(v) if isinstance(v, set) else v for k, v in config.items()}


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    from .atomic import atomic_write

    atomic_write(path, lambda tmp: save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata))


def _pack(
    state_dict: Mapping[str, torch.Tensor], config: dict[str, Any], info: dict[str, Any], prefix: str
) -> tuple[dict, dict]:
    adapter_meta = {f"{prefix}.{k}": v for k, v in config.items()}
    metadata = {
        "format": "pt",
        "lora_adapter_metadata": json.dumps(adapter_meta, indent=2, sort_keys=True, default=str),
        "draftsdk": json.dumps(info, sort_keys=True, default=str),
    }
    return {f"{prefix}.{k}": v for k, v in state_dict.items()}, metadata


def save_lora(
    path: str | os.PathLike[str],
    unet: Any,
    *,
    prefix: str = "unet",
    adapter_name: str = ADAPTER_NAME,
    base_model: str | None = None,
    reward_spec: Any = None,
    train_config: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write the adapter of ``unet`` (any peft-adapted denoiser) as a diffusers-format LoRA file, atomically.

    An adapter trained with ``alpha != rank`` is written with its scale ``alpha/rank`` folded into
    the B matrices and ``alpha = rank`` in the header (the trained alpha is kept as
    ``trained_alpha`` in the draftsdk header), so every loader applies the same update.

    ``prefix`` is the denoiser's component name in its pipeline (``unet``, ``transformer``): the
    family's ``load_lora_weights`` looks for it. ``unet`` must be the unwrapped model (not a
    DDP/accelerate wrapper: wrapper prefixes would make the saved keys miss every module).
    """
    from peft.utils import get_peft_model_state_dict

    from . import __version__

    if hasattr(unet, "module") and not hasattr(unet, "peft_config"):
        unet = unet.module
    if adapter_name not in getattr(unet, "peft_config", {}):
        raise LoraError(f"the model has no LoRA adapter named {adapter_name!r}; attach one with draftsdk.lora.add_lora")
    state = get_peft_model_state_dict(unet, adapter_name=adapter_name)
    if not state:
        raise LoraError(f"adapter {adapter_name!r} produced an empty state dict; nothing to save")
    config = _adapter_config(unet, adapter_name)
    trained_alpha = config["lora_alpha"]
    if trained_alpha != config["r"]:
        # fold alpha/r into B, so the file means the same to loaders that ignore the alpha in its header
        # (diffusers before 0.34, ComfyUI, ...): the weights alone carry the trained scale
        state = {k: v * (trained_alpha / config["r"]) if ".lora_B." in k else v for k, v in state.items()}
        config = {**config, "lora_alpha": config["r"]}
    info = {
        "version": __version__,
        "base_model": base_model,
        "denoiser_fingerprint": denoiser_fingerprint(unet),
        "rank": config["r"],
        "alpha": config["lora_alpha"],
        "trained_alpha": trained_alpha,
        "targets": config["target_modules"],
        "reward": reward_spec,
        "train_config": dict(train_config) if train_config is not None else None,
        **dict(extra or {}),
    }
    tensors, metadata = _pack(state, config, info, prefix)
    target = Path(path)
    _atomic_save(tensors, target, metadata)
    return target


@dataclass
class LoraFile:
    """A LoRA file read by [read_lora][draftsdk.lora.read_lora].

    Attributes:
        state_dict: diffusers-format tensors (the ``prefix.`` kept).
        prefix: the denoiser component the keys start with (``unet``, ``transformer``).
        rank, alpha: the adapter's rank and alpha (alpha = rank when the file does not say).
        targets: LoRA target module names from the header, if present.
        info: draftsdk's header (empty for files from other tools).
    """

    path: Path
    state_dict: dict[str, torch.Tensor]
    rank: int
    alpha: float
    targets: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    adapter_config: dict[str, Any] = field(default_factory=dict)
    prefix: str = "unet"

    @property
    def fingerprint(self) -> str | None:
        """The denoiser fingerprint draftsdk recorded (None for files from other tools)."""
        return self.info.get("denoiser_fingerprint") or self.info.get("unet_fingerprint")  # the key before 0.2

    def modules(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{module path: (A, B)}`` with A the down (r, in) and B the up (out, r) factor."""
        pairs: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in self.state_dict.items():
            name = key.removeprefix(f"{self.prefix}.")
            for down, up in ((".lora.down.weight", ".lora.up.weight"), (".lora_A.weight", ".lora_B.weight")):
                if name.endswith(down):
                    pairs.setdefault(name[: -len(down)], {})["A"] = value
                elif name.endswith(up):
                    pairs.setdefault(name[: -len(up)], {})["B"] = value
        broken = [m for m, ab in pairs.items() if len(ab) != 2]
        if broken:
            raise LoraError(f"{self.path}: module {broken[0]!r} lacks its down or up matrix")
        return {m: (ab["A"], ab["B"]) for m, ab in sorted(pairs.items())}


def read_lora(path: str | os.PathLike[str], *, trust_pickle: bool = False) -> LoraFile:
    """Read a LoRA file. Pickle formats (.bin/.pt/...) are refused unless ``trust_pickle=True``,
    and even then load with ``torch.load(weights_only=True)``."""
    file = Path(path)
    if not file.is_file():
        raise LoraError(f"LoRA file {str(file)!r} does not exist")
    metadata: dict[str, str] = {}
    if file.suffix in PICKLE_SUFFIXES:
        if not trust_pickle:
            raise LoraError(
                f"{str(file)!r} is a pickle file, which can run code when loaded; convert it to safetensors, "
                "or pass trust_pickle=True (--trust-pickle) if you trust its source"
            )
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise LoraError(f"cannot read {str(file)!r} with weights_only=True: {str(exc).splitlines()[0]}") from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise LoraError(f"{str(file)!r} does not hold a flat dict of tensors")
    else:
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(file), framework="pt") as f:
                metadata = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError) as exc:
            raise LoraError(f"{str(file)!r} is not a readable safetensors file ({str(exc).splitlines()[0]})") from None
    prefixes = {key.split(".", 1)[0] for key in state}
    prefix = next((p for p in DENOISER_PREFIXES if p in prefixes), "unet")
    config: dict[str, Any] = {}
    if "lora_adapter_metadata" in metadata:
        raw = json.loads(metadata["lora_adapter_metadata"])
        config = {k.removeprefix(f"{prefix}."): v for k, v in raw.items() if k.startswith(f"{prefix}.")}
    info = json.loads(metadata["draftsdk"]) if "draftsdk" in metadata else {}
    lora = LoraFile(file, dict(state), rank=0, alpha=0.0, info=info, adapter_config=config, prefix=prefix)
    modules = lora.modules()
    if not modules:
        raise LoraError(
            f"{str(file)!r} holds no denoiser LoRA weights (expected keys like unet.<module>.lora_A.weight "
            "or transformer.<module>.lora_A.weight)"
        )
    diverged = next((k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if diverged is not None:
        raise LoraError(
            f"{str(file)!r} holds NaN/inf weights ({diverged}): the training that wrote it diverged; "
            "use an earlier checkpoint's lora.safetensors"
        )
    lora.rank = int(config.get("r") or next(iter(modules.values()))[0].shape[0])
    lora.alpha = float(config.get("lora_alpha") or lora.rank)
    lora.targets = list(config.get("target_modules") or [])
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise LoraError(f"{str(file)!r} uses per-module rank/alpha patterns, which draftsdk does not support")
    return lora


def check_compatible(unet: Any, lora: LoraFile) -> None:
    """Raise LoraError naming the first module whose shapes do not fit ``unet`` (another base model)."""
    for module_name, (down, up) in lora.modules().items():
        try:
            module = unet.get_submodule(module_name)
        except AttributeError:
            raise LoraError(
                f"{lora.path.name}: module {module_name!r} does not exist in this model (a LoRA for another base model?)"
            ) from None
        base = getattr(module, "base_layer", module)
        weight = getattr(base, "weight", None)
        if weight is None:
            continue
        expected_in = weight.shape[1] if weight.ndim > 1 else weight.shape[0]
        if down.shape[1] != expected_in or up.shape[0] != weight.shape[0]:
            raise LoraError(
                f"{lora.path.name} does not fit this model: module {module_name!r} has weight {tuple(weight.shape)} "
                f"but the LoRA has down {tuple(down.shape)} / up {tuple(up.shape)} (a LoRA for another base model?)"
            )


def load_lora(
    pipeline: Any,
    path: str | os.PathLike[str],
    adapter_name: str | None = None,
    *,
    weight: float = 1.0,
    trust_pickle: bool = False,
) -> str:
    """Load a draftsdk or diffusers LoRA file onto ``pipeline`` under ``adapter_name`` (default: the file stem).

    Shapes are checked first, so a LoRA for another base model fails with the module and both shapes.
    Returns the adapter name.
    """
    lora = read_lora(path, trust_pickle=trust_pickle)
    denoiser = _denoiser(pipeline)
    check_compatible(denoiser, lora)
    name = adapter_name or lora.path.stem.replace(".", "_")
    if name in getattr(denoiser, "peft_config", {}):
        raise LoraError(f"an adapter named {name!r} is already loaded; pass another adapter_name")
    from .plugin_utils import quiet_diffusers, quiet_transformers

    source: Any = str(lora.path) if lora.path.suffix == ".safetensors" else lora.state_dict
    with quiet_diffusers(), quiet_transformers():  # "no LoRA keys for the text encoder" is expected here
        pipeline.load_lora_weights(source, adapter_name=name)
    scale(pipeline, name, weight)
    return name


def _denoiser(pipeline: Any) -> Any:
    from .models import family_for

    return family_for(pipeline).denoiser(pipeline)


def restore_lora(unet: Any, path: str | os.PathLike[str], adapter_name: str = ADAPTER_NAME) -> None:
    """Copy the weights of a saved file into an existing adapter of ``unet`` (used to resume training)."""
    from peft.utils import set_peft_model_state_dict

    lora = read_lora(path)
    check_compatible(unet, lora)
    config = unet.peft_config[adapter_name]
    rescale = (lora.alpha / lora.rank) / (config.lora_alpha / config.r)  # a folded file into an alpha != r adapter
    state = {}
    for module, (down, up) in lora.modules().items():
        state[f"{module}.lora_A.weight"], state[f"{module}.lora_B.weight"] = down, up * rescale if rescale != 1 else up
    result = set_peft_model_state_dict(unet, state, adapter_name=adapter_name)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise LoraError(f"{lora.path.name}: {len(unexpected)} tensors did not match adapter {adapter_name!r}, e.g. {unexpected[0]}")


def _warn_extrapolation(name: str, alpha: float) -> None:
    if abs(alpha) > EXTRAPOLATION_WARNING:
        warnings.warn(
            f"LoRA {name!r} scaled by {alpha:g}: beyond ±{EXTRAPOLATION_WARNING:g} this extrapolates far past the "
            "fine-tuned model and images may break down",
            stacklevel=3,
        )


def scale(pipeline: Any, name: str, alpha: float) -> None:
    """Use only adapter ``name``, scaled by ``alpha``: θ_pre + α·ΔW (0 = base model, 1 = fine-tuned).

    Values outside [0, 1] extrapolate; a warning is issued beyond ±1.5.
    """
    set_mix(pipeline, {name: alpha})


def set_mix(pipeline: Any, weights: Mapping[str, float]) -> None:
    """Activate several loaded adapters at once: θ_pre + Σ w_i·ΔW_i (``set_adapters``)."""
    if not weights:
        raise LoraError("set_mix: no adapters given")
    denoiser = _denoiser(pipeline)
    loaded = set(getattr(denoiser, "peft_config", {}))
    for name, value in weights.items():
        if name not in loaded:
            raise LoraError(f"no adapter named {name!r} is loaded; loaded: {', '.join(sorted(loaded)) or 'none'}")
        if not math.isfinite(value):
            raise LoraError(f"weight of adapter {name!r} must be finite, got {value!r}")
        _warn_extrapolation(name, value)
    denoiser.set_adapters(list(weights), weights=[float(w) for w in weights.values()])


def parse_weighted_path(text: str, default: float = 1.0) -> tuple[str, float]:
    """Split ``FILE[:WEIGHT]``; the weight must be a finite number.

    Examples:
        >>> parse_weighted_path("a.safetensors:0.7"), parse_weighted_path("b.safetensors")
        (('a.safetensors', 0.7), ('b.safetensors', 1.0))
    """
    path, sep, raw = text.rpartition(":")
    if not sep or "/" in raw or "\\" in raw:
        return text, default
    try:
        value = float(raw)
    except ValueError:
        raise LoraError(f"{text!r}: expected FILE:WEIGHT with a number after the colon, got {raw!r}") from None
    if not math.isfinite(value):
        raise LoraError(f"{text!r}: the weight must be finite")
    if not path:
        raise LoraError(f"{text!r}: missing file name before the colon")
    return path, value


def mix_files(
    inputs: Sequence[tuple[str | os.PathLike[str], float]],
    output: str | os.PathLike[str],
    *,
    trust_pickle: bool = False,
) -> Path:
    """Write ONE adapter whose effect is exactly ``Σ w_i·(α_i/r_i)·B_i·A_i``.

    The factors are concatenated along the rank dimension (rank = Σ r_i); each file's weight and
    alpha/rank scale are folded into its B block, and the output has alpha = rank (scale 1). A module
    present in only some files gets zero blocks for the others, which keeps the sum exact.

    Raises:
        LoraError: empty input, zero total weight, or files whose shapes for the same module differ
            (adapters for different base models) — the message names the module and both shapes.
    """
    if not inputs:
        raise LoraError("mix: no input files given; pass at least one FILE:WEIGHT")
    from .atomic import check_output_path

    check_output_path(output, [p for p, _ in inputs], overwrite=True)  # an input is never replaced
    weights = [float(w) for _, w in inputs]
    if not all(math.isfinite(w) for w in weights):
        raise LoraError("mix: weights must be finite numbers")
    if sum(abs(w) for w in weights) == 0:
        raise LoraError("mix: all weights are zero; the mix would be the base model")
    loras = [read_lora(p, trust_pickle=trust_pickle) for p, _ in inputs]
    fingerprints = {lo.fingerprint for lo in loras} - {None}
    if len(fingerprints) > 1:
        names = ", ".join(f"{lo.path.name}={lo.fingerprint}" for lo in loras)
        raise LoraError(f"mix: the adapters were trained on different base models (denoiser fingerprints {names})")
    prefixes = {lo.prefix for lo in loras}
    if len(prefixes) > 1:
        raise LoraError(f"mix: the adapters are for different denoisers ({', '.join(sorted(prefixes))}); mix adapters of one model")
    per_file = [lo.modules() for lo in loras]
    all_modules = sorted(set().union(*per_file))
    total_rank = sum(lo.rank for lo in loras)
    mixed: dict[str, torch.Tensor] = {}
    for module in all_modules:
        shapes = {lo.path.name: mods[module] for lo, mods in zip(loras, per_file) if module in mods}
        (first_name, (a0, b0)), *rest = shapes.items()
        for other_name, (a, b) in rest:
            if a.shape[1:] != a0.shape[1:] or b.shape[0] != b0.shape[0] or b.shape[2:] != b0.shape[2:]:
                raise LoraError(
                    f"mix: module {module!r} has down {tuple(a0.shape)}/up {tuple(b0.shape)} in {first_name} but "
                    f"down {tuple(a.shape)}/up {tuple(b.shape)} in {other_name} (different base models?)"
                )
        downs, ups = [], []
        for lo, mods, w in zip(loras, per_file, weights):
            if module in mods:
                a, b = mods[module]
                downs.append(a.float())
                ups.append(b.float() * (w * lo.alpha / lo.rank))
            else:
                downs.append(a0.new_zeros((lo.rank, *a0.shape[1:])).float())
                ups.append(b0.new_zeros((b0.shape[0], lo.rank, *b0.shape[2:])).float())
        mixed[f"{module}.lora_A.weight"] = torch.cat(downs, dim=0)
        mixed[f"{module}.lora_B.weight"] = torch.cat(ups, dim=1)
    targets = sorted({t for lo in loras for t in lo.targets}) or all_modules
    config = {**loras[0].adapter_config, "r": total_rank, "lora_alpha": total_rank, "target_modules": targets}
    config.pop("rank_pattern", None)
    config.pop("alpha_pattern", None)
    info = {
        "mix": [{"file": str(lo.path), "weight": w, "rank": lo.rank, "alpha": lo.alpha} for lo, w in zip(loras, weights)],
        "base_model": loras[0].info.get("base_model"),
        "denoiser_fingerprint": next(iter(fingerprints), None),
        "rank": total_rank,
        "alpha": total_rank,
        "targets": targets,
    }
    from . import __version__

    info["version"] = __version__
    tensors, metadata = _pack(mixed, config, info, loras[0].prefix)
    target = Path(output)
    _atomic_save(tensors, target, metadata)
    return target
