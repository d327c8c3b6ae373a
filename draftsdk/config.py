"""`TrainConfig`: every setting of a DRaFT run, validated by pydantic, loadable from TOML or YAML.

Defaults follow the DRaFT paper's small-scale setting (SD 1.4, LoRA rank 8, lr 4e-4, AdamW weight
decay 0.1, batch 4); sampling steps, guidance and size default to the model family's (DDIM 50 steps
and guidance 7.5 for SD). A bad value raises [ConfigError][draftsdk.config.ConfigError] whose
one-line message names the field; a variant's options are checked against T once T is known.

Examples:
    >>> from draftsdk import TrainConfig
    >>> cfg = TrainConfig(variant="draft-k", k=5, steps=100)
    >>> cfg.grad_steps_range()
    (5, 5)
    >>> TrainConfig(variant="draft-k", k=60, num_inference_steps=50)
    Traceback (most recent call last):
    ...
    draftsdk.config.ConfigError: invalid config: k: k=60 is larger than num_inference_steps=50; use k <= num_inference_steps
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import DraftError, read_user_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["TrainConfig", "ConfigError", "apply_overrides", "format_validation_error"]


class ConfigError(DraftError, ValueError):
    """A configuration value is invalid; the message names the field."""


def format_validation_error(exc: ValidationError, prefix: str = "invalid config") -> str:
    """One line per pydantic error list: ``invalid config: field.sub: message``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(err["loc"][-1]), list(TrainConfig.model_fields), 1)
            msg = "unknown setting" + (f"; did you mean {close[0]!r}?" if close else "")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return f"{prefix}: " + "; ".join(parts)


def _numeric(annotation: Any) -> bool:
    """True for int/float annotations, also inside ``X | None``."""
    import typing

    args = typing.get_args(annotation)
    return annotation in (int, float) or (bool(args) and all(a in (int, float, type(None)) for a in args) and bool(
        {int, float} & set(args)))


class TrainConfig(BaseModel):
    """Settings of a DRaFT fine-tuning run.

    The reward (``rewards``) and base model (``model``) are used by ``draftsdk train``; in Python you
    pass the pipeline and objective to [Trainer][draftsdk.Trainer] directly and may leave them unset.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # what to train
    model: str | None = Field(None, description="Base pipeline: a local folder or a hub id (`draftsdk train`).")
    family: str | None = Field(None, description="Model family (sd, sdxl, ...); default: detected from the pipeline.")
    rewards: dict[str, Any] | None = Field(
        None, description="Objective for `draftsdk train`: {name: weight} or {name: {weight, options, offset, scale}}."
    )
    prompts: list[str] | None = Field(None, description="Training prompts (or use prompt_file / prompt_set).")
    prompt_file: Path | None = Field(None, description="Text file with one prompt per line.")
    prompt_set: str | None = Field(None, description="A bundled prompt set, e.g. 'simple-animals' (45 prompts).")
    negative_prompt: str | None = Field(None, description="Negative prompt for classifier-free guidance.")

    # the algorithm
    variant: str = Field("draft-lv", description="draft | draft-k | draft-random-k | draft-lv | refl | ddpo, or a plugin's.")
    variant_options: dict[str, Any] = Field({}, description="Options of a plugin variant (built-in ones are fields here).")
    k: int = Field(1, ge=1, le=1000, description="Steps with gradient for draft-k (DRaFT-K).")
    k_range: tuple[int, int] | None = Field(None, description="Inclusive range K is drawn from, once per rollout (draft-random-k; default 1..T).")
    lv_copies: int = Field(2, ge=1, le=64, description="Re-noised copies of the final latent for draft-lv (n).")
    refl_last_steps: int = Field(10, ge=1, le=1000, description="ReFL stops at a random step among the last m steps.")
    kl_weight: float = Field(
        0.0, ge=0.0, description="Guard against reward hacking: weight of ||eps_lora - eps_base||^2 on the steps with gradient."
    )

    # sampling
    num_inference_steps: int | None = Field(None, ge=1, le=1000, description="Sampling steps T (default: the family's, 50 for SD).")
    guidance_scale: float | None = Field(None, ge=0.0, description="Guidance scale (default: the family's, 7.5 for SD; <= 1 disables CFG).")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta (0 = deterministic).")
    height: int | None = Field(None, ge=8, le=8192, description="Image height (default: the model's).")
    width: int | None = Field(None, ge=8, le=8192, description="Image width (default: the model's).")

    # LoRA
    lora_rank: int = Field(8, ge=1, le=1024, description="LoRA rank (paper: 8; 32 for HPSv2).")
    lora_alpha: float | None = Field(None, gt=0, description="LoRA alpha (default: the rank, i.e. scale 1).")
    lora_targets: list[str] | None = Field(
        None, min_length=1, description="Denoiser modules to adapt (default: the family's, attention projections for SD)."
    )

    # optimisation
    steps: int = Field(2000, ge=1, description="Optimizer updates.")
    batch_size: int = Field(4, ge=1, le=1024, description="Prompts per rollout, per process.")
    grad_accum_steps: int = Field(1, ge=1, le=1024, description="Rollouts accumulated per update.")
    learning_rate: float = Field(4e-4, gt=0, description="AdamW learning rate (paper: 4e-4; 2e-4 for HPSv2).")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay (paper: 0.1).")
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    adam_eps: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    warmup_steps: int = Field(0, ge=0, description="Linear learning-rate warm-up.")
    lr_schedule: Literal["constant", "cosine"] = Field("constant", description="After warm-up: constant or cosine decay.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping (None disables).")
    max_nonfinite_steps: int = Field(5, ge=1, description="Stop after this many skipped (NaN/inf) steps in a row.")

    # ddpo baseline
    ddpo_clip_range: float = Field(1e-4, gt=0, description="PPO clip range (DDPO).")
    ddpo_adv_clip: float = Field(5.0, gt=0, description="Advantage clipping (DDPO).")
    ddpo_train_fraction: float = Field(1.0, gt=0, le=1.0, description="Fraction of timesteps trained per rollout (DDPO).")
    ddpo_minibatches: int = Field(
        2, ge=1, le=64, description="Optimizer updates per DDPO rollout batch (the batch split into minibatches; at most batch_size)."
    )
    ddpo_inner_epochs: int = Field(1, ge=1, le=16, description="Passes over each DDPO rollout batch.")

    # hardware
    collective_timeout_s: float = Field(
        600.0, gt=0, le=86400, description="With several processes: how long a collective waits for the others before failing the run."
    )
    compile: bool = Field(
        False, description="torch.compile the denoiser for the sampling steps without gradient (falls back to eager, with a warning, if compilation fails)."
    )
    compile_options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for torch.compile, e.g. {mode = 'max-autotune-no-cudagraphs'}."
    )
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="Frozen weights in half precision, LoRA in fp32, autocast; auto = bf16 on CUDA, no on the CPU."
    )
    tf32: bool = Field(True, description="Allow TF32 matrix multiplications on CUDA (Ampere and newer).")
    checkpointing: Literal["auto", "always", "never"] = Field(
        "auto", description="Gradient checkpointing of each UNet call with grad: auto = when more than one step has grad."
    )
    checkpoint_vae: bool = Field(True, description="Checkpoint the VAE decoder block by block (its activations are the largest at 512 px).")
    checkpoint_blocks: bool = Field(
        False, description="Also checkpoint each block inside the denoiser (bounds the recompute peak of big transformers, e.g. FLUX)."
    )
    offload_text_encoders: bool = Field(
        False, description="Encode every prompt once at the start, then move the text encoders to the CPU (T5-XXL is ~9.5 GB)."
    )
    seed: int = Field(0, description="Seed of prompts, noise and K draws (each process adds its rank).")

    # run directory, logging, checkpoints
    output_dir: Path = Field(Path("runs/draft"), description="Run directory.")
    overwrite: bool = Field(False, description="Allow writing into an existing, non-empty run directory.")
    resume: bool = Field(False, description="Continue from the latest checkpoint in output_dir.")
    save_every: int = Field(100, ge=1, description="Checkpoint every N updates (and at the end).")
    keep_checkpoints: int = Field(2, ge=1, description="How many recent checkpoints to keep.")
    eval_every: int = Field(100, ge=1, description="Image grid and evaluation reward every N updates.")
    eval_prompts: list[str] | None = Field(None, description="Fixed evaluation prompts (default: the first 4 training prompts).")
    eval_seeds: list[int] = Field([0, 1], min_length=1, max_length=256, description="Seeds of the evaluation images.")
    eval_rewards: dict[str, Any] | None = Field(
        None, description="Rewards scored on the evaluation images and logged as eval/<name>, not optimised (non-differentiable ones too)."
    )
    progress: bool = Field(True, description="Show a progress bar.")
    tensorboard: bool = Field(True, description="Write TensorBoard scalars when tensorboard is installed.")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc)) from None

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        """``steps = true`` is a mistake, not 1: pydantic's lax mode would take a bool for a number."""
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name)
                if isinstance(value, bool) and field is not None and _numeric(field.annotation):
                    raise ValueError(f"{name}: expected a number, got the boolean {str(value).lower()}")
        return data

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        variant = self.variant_class()
        self.build_variant(self.num_inference_steps)  # the variant validates its own options
        guidance = self.guidance_scale
        if self.negative_prompt and guidance is not None and guidance <= 1.0:
            raise ValueError(
                f"guidance_scale: a negative_prompt needs guidance_scale > 1 (got {guidance}); raise it or drop the negative prompt"
            )
        if self.prompts is not None and not [p for p in self.prompts if p.strip()]:
            raise ValueError("prompts: the list is empty; give at least one prompt, a prompt_file or a prompt_set")
        if getattr(variant, "needs_stochastic_sampler", False) and self.eta == 0.0:
            raise ValueError(f"eta: {self.variant} needs a stochastic sampler; set eta > 0 (DDPO uses 1.0)")
        if self.resume and self.overwrite:
            raise ValueError("resume: resume and overwrite exclude each other; choose one")
        if self.rewards is not None and not self.rewards:
            raise ValueError("rewards: empty; give at least one reward, e.g. {brightness = 1.0}")
        if self.eval_rewards is not None and not self.eval_rewards:
            raise ValueError("eval_rewards: empty; leave it out or give at least one reward, e.g. {contrast = 1.0}")
        return self

    def variant_class(self) -> Any:
        """The registered [Variant][draftsdk.variants.Variant] class named by ``variant``."""
        from .extensions import UnknownNameError, variants

        try:
            return variants.get(self.variant)
        except UnknownNameError as exc:
            raise ValueError(f"variant: {exc}") from None

    def variant_option_values(self) -> dict[str, Any]:
        """The variant's options: same-named fields of this config, then ``variant_options``."""
        cls = self.variant_class()
        values = {name: getattr(self, name) for name in cls.Options.model_fields if name in type(self).model_fields}
        return {**values, **self.variant_options}

    def build_variant(self, num_steps: int | None = None) -> Any:
        """The variant object with its validated options (checked against T when ``num_steps`` is given).

        Raises:
            ValueError: an option is invalid; the message starts with its name.
        """
        from pydantic import ValidationError

        cls = self.variant_class()
        try:
            options = cls.Options(**self.variant_option_values())
        except ValidationError as exc:
            prefix = "variant_options." if self.variant_options else ""
            raise ValueError(format_validation_error(exc, prefix=f"{self.variant} option").replace(": ", ": " + prefix, 1)) from None
        if num_steps is None:
            return None
        return cls(options, num_steps)

    def grad_steps_range(self, num_steps: int | None = None) -> tuple[int, int]:
        """The (min, max) number of sampling steps that carry gradient for this variant.

        T is ``num_steps``, else ``num_inference_steps``, else 50 (the SD families' default).
        """
        return self.build_variant(num_steps or self.num_inference_steps or 50).grad_steps_range()

    @classmethod
    def from_file(cls, path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
        """Load a ``.toml``, ``.yaml``/``.yml`` or ``.json`` file, then apply ``key=value`` overrides.

        Relative paths inside the file (prompt_file, output_dir, a local model folder) stay relative
        to the current directory, like paths given on the command line.
        """
        file = Path(path)
        try:
            text = read_user_text(file, "config file")
        except DraftError as exc:
            raise ConfigError(str(exc)) from None
        try:
            if file.suffix == ".toml":
                data = tomllib.loads(text)
            elif file.suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text) or {}
            elif file.suffix == ".json":
                data = json.loads(text)
            else:
                raise ConfigError(f"config file {str(file)!r}: use a .toml, .yaml or .json file")
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"config file {str(file)!r} is not valid {file.suffix[1:].upper()}: {exc}") from None
        except ImportError:
            raise ConfigError("YAML configs need PyYAML: pip install pyyaml") from None
        except Exception as exc:  # yaml.YAMLError and friends
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"config file {str(file)!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {str(file)!r} must hold a table of settings")
        return cls.build(apply_overrides(data, overrides), source=str(file))

    @classmethod
    def build(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        """Validate ``data``; raise ConfigError with a one-line message naming the fields."""
        try:
            return cls(**data)
        except ConfigError as exc:
            if source == "config":
                raise
            raise ConfigError(str(exc).replace("invalid config", f"invalid {source}", 1)) from None

    def to_json_dict(self) -> dict[str, Any]:
        """The resolved settings as JSON-friendly data (stored in run directories and LoRA files)."""
        return json.loads(self.model_dump_json())


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides (dotted keys reach into tables; values parse as JSON when they can).

    Examples:
        >>> apply_overrides({"rewards": {"brightness": 1.0}}, ["steps=10", "rewards.contrast=0.5", "variant=draft-k"])
        {'rewards': {'brightness': 1.0, 'contrast': 0.5}, 'steps': 10, 'variant': 'draft-k'}
    """
    from .cli import parse_option

    result = json.loads(json.dumps(data, default=str))
    for text in overrides:
        key, value = parse_option(text)
        node = result
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text}: {part!r} is not a table")
            node = child
        node[leaf] = value
    return result
