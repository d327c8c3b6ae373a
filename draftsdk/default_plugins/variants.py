"""The built-in variants (DRaFT, DRaFT-K, random K, DRaFT-LV, ReFL, DDPO), registered like a plugin's."""

from __future__ import annotations

from typing import Any

from ..hookspecs import hookimpl


@hookimpl
def register_variants(register: Any) -> None:
    from ..variants.ddpo import DDPO
    from ..variants.draft import DRaFT
    from ..variants.draft_k import DRaFTK
    from ..variants.draft_lv import DRaFTLV
    from ..variants.random_k import RandomK
    from ..variants.refl import ReFL

    for cls in (DRaFT, DRaFTK, RandomK, DRaFTLV, ReFL, DDPO):
        register(cls)
