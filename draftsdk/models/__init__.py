"""Model families: one registered object per kind of pipeline (SD 1.x/2.x, SDXL, ...).

Examples:
    >>> import draftsdk.models as models
    >>> [f for f in models.list_families() if f in ("sd", "sdxl")]
    ['sd', 'sdxl']
    >>> from draftsdk.testing import tiny_pipeline
    >>> models.family_for(tiny_pipeline()).name
    'sd'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import torch

from ..extensions import families
from .base import Conditioning, ModelFamily, ModelLoadError, PackedLatents

__all__ = [
    "Conditioning",
    "ModelFamily",
    "PackedLatents",
    "ModelLoadError",
    "family_for",
    "family_for_model",
    "get_family",
    "list_families",
    "load_pipeline",
    "resolve_model_path",
]

EMBEDDED_MODELS = {"draftsdk:digits": "draftsdk.demo.model", "draftsdk:digits-flow": "draftsdk.demo.flow_model"}


def list_families() -> list[str]:
    """Names of the registered model families."""
    return families.names()


def get_family(name: str) -> ModelFamily:
    """An instance of the family registered as ``name`` (UnknownNameError with suggestions otherwise)."""
    return families.get(name)()


def _all() -> list[ModelFamily]:
    """Every family, in registration order (draftsdk's own first, SD 1.x/2.x leading)."""
    return [entry.cls() for entry in families.table().values()]


def family_for(pipeline: Any) -> ModelFamily:
    """The family of a pipeline object: by its class (or a base class), else by its components.

    Raises:
        TypeError: no family fits; the message names the components missing for the closest one.
    """
    candidates = _all()
    classes = [c.__name__ for c in type(pipeline).__mro__]
    for cls_name in classes:
        for family in candidates:
            if cls_name in family.pipeline_classes:
                return family
    fitting = [f for f in candidates if not f.missing_components(pipeline)]
    if fitting:  # a duck-typed object: the most specific family whose components are all there
        return max(fitting, key=lambda f: len(f.required_components))
    # ties (e.g. an object with none of the components) go to the earliest registered: SD's needs are named
    closest = min(candidates, key=lambda f: (len(f.missing_components(pipeline)), len(f.required_components)))
    closest.check(pipeline)
    raise AssertionError("unreachable")  # pragma: no cover


def resolve_model_path(model: str) -> str:
    """Expand ``draftsdk:<name>`` to the folder of a model shipped inside draftsdk."""
    if model in EMBEDDED_MODELS:
        import importlib

        return str(importlib.import_module(EMBEDDED_MODELS[model]).pipeline_path())
    if model.startswith("draftsdk:"):
        raise ModelLoadError(f"unknown embedded model {model!r}; available: {', '.join(EMBEDDED_MODELS)}")
    return model


def _pipeline_class_name(model: str) -> str:
    folder = Path(model)
    index = folder / "model_index.json"
    if folder.is_dir():
        if not index.is_file():
            raise ModelLoadError(f"cannot load the pipeline folder {model!r}: it has no model_index.json (save it with save_pretrained)")
        try:
            return str(json.loads(index.read_text(encoding="utf-8"))["_class_name"])
        except (ValueError, KeyError) as exc:
            raise ModelLoadError(f"cannot load the pipeline folder {model!r}: model_index.json is unreadable ({exc})") from None
    from diffusers import DiffusionPipeline

    from ..plugin_utils import quiet_diffusers

    try:
        with quiet_diffusers():
            # cast: diffusers annotates load_config as returning (config, unused_kwargs); without the flags it is the dict
            return str(cast("dict[str, Any]", DiffusionPipeline.load_config(model))["_class_name"])
    except (OSError, ValueError, KeyError):
        raise ModelLoadError(
            f"cannot load the pipeline {model!r}: it is not a local folder and not in the Hugging Face cache "
            "(offline or unknown id); pass a folder saved with save_pretrained, or download it with network access"
        ) from None


def family_for_model(model: str) -> ModelFamily:
    """The family of a folder or hub id, from the pipeline class its ``model_index.json`` names."""
    class_name = _pipeline_class_name(resolve_model_path(model))
    for family in _all():
        if class_name in family.pipeline_classes:
            return family
    supported = "; ".join(f"{f.name}: {', '.join(f.pipeline_classes)}" for f in _all())
    raise ModelLoadError(f"{model!r} is a {class_name}, which no installed model family supports ({supported})")


def load_pipeline(
    model: str, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None, family: str | None = None
) -> Any:
    """Load a pipeline from a local folder or a hub id with the class of its model family.

    The family comes from the folder's ``model_index.json`` unless ``family`` names one. Offline
    (``HF_HUB_OFFLINE=1``) a hub id works only when it is in the Hugging Face cache; a missing model
    gives a one-line error that says how to pass a local folder. ``"draftsdk:digits"`` names the small
    digits model shipped inside draftsdk (used by ``draftsdk demo``). SD pipelines load without the
    safety checker.

    Examples:
        >>> import tempfile, draftsdk
        >>> from draftsdk.testing import save_tiny_pipeline
        >>> folder = save_tiny_pipeline(tempfile.mkdtemp() + "/pipe")
        >>> type(draftsdk.load_pipeline(str(folder))).__name__
        'StableDiffusionPipeline'
    """
    chosen = get_family(family) if family else family_for_model(model)
    pipe = chosen.load(resolve_model_path(model), dtype=dtype)
    return pipe.to(device)
