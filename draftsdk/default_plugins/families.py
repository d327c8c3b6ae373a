"""The built-in model families, registered through the same hook as a third party's."""

from __future__ import annotations

from typing import Any

from ..hookspecs import hookimpl


@hookimpl
def register_model_families(register: Any) -> None:
    from ..models.flux import Flux
    from ..models.flux2 import Flux2Klein
    from ..models.qwenimage import QwenImage
    from ..models.sd import StableDiffusion
    from ..models.sd3 import StableDiffusion3
    from ..models.sdxl import StableDiffusionXL

    for family in (StableDiffusion, StableDiffusionXL, StableDiffusion3, Flux, Flux2Klein, QwenImage):
        register(family)
