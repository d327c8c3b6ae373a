"""draftsdk-owlvit: OWL-ViT open-vocabulary detection as a differentiable reward (add or remove objects).

The reward runs a transformers ``OwlViTForObjectDetection`` (or ``Owlv2ForObjectDetection``) on the
generated images and turns the detection scores of a text ``query`` into one number per image:

- per box, the score is ``sigmoid(logit)`` of the query, exactly what
  ``post_process_object_detection`` reports (with several queries: the best query per box);
- over the boxes, ``reduce`` makes it a scalar: ``"max"`` (default; the confidence of the best box),
  ``"softmax"`` (``temperature * (logsumexp(scores / temperature) - log(num_boxes))``, between the
  mean and the max, gradient spread over every high-scoring box) or ``"count"`` (the sum of the box
  scores, optionally ``-(count - target_count) ** 2``);
- ``mode="add"`` returns the scalar (maximise: make the object appear), ``mode="remove"`` returns
  minus the scalar (maximise: make it disappear).

Pre-processing is done in torch ops, as the model's image processor does it (OWL-ViT: bicubic
resize to the model's square input, CLIP mean/std; OWLv2: pad to square, Gaussian anti-aliasing,
bilinear resize), so gradients reach the pixels.

Importing this module loads nothing heavy: torch and transformers are imported when the reward is
instantiated.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import draftsdk
from draftsdk.registry import RewardMeta
from draftsdk.plugin_utils import first_line, freeze, resolve_device, resolve_dtype
from draftsdk.rewards import check_inputs

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["OwlViTReward", "DEFAULT_MODEL", "PROMPT_PLACEHOLDER"]
__version__ = "0.1.0"

DEFAULT_MODEL = "google/owlvit-base-patch32"
"""The checkpoint used when ``path`` is not given (Hugging Face hub id)."""

PROMPT_PLACEHOLDER = "{prompt}"
"""A query containing this text is filled in with each image's prompt."""

_MODES = ("add", "remove")
_REDUCTIONS = ("max", "softmax", "count")
_CACHE_LIMIT = 4096  # per-prompt query embeddings kept (only with a {prompt} template)


def _normalise_queries(query: Any) -> list[str]:
    hint = (
        "pass query='a strawberry' (the object to add or remove), a list such as ['a person', 'people'], "
        "or a template such as 'a photo of {prompt}'"
    )
    if query is None:
        raise ValueError(f"owlvit: no query given; {hint}")
    queries = [query] if isinstance(query, str) else list(query) if isinstance(query, Sequence) else None
    if not queries or not all(isinstance(q, str) and q.strip() for q in queries):
        raise ValueError(f"owlvit: query must be a non-empty string or a list of them, got {query!r}; {hint}")
    return [q.strip() for q in queries]


class OwlViTReward:
    """Detection score of a text query by OWL-ViT: maximise it to add an object, minimise it to remove one.

    Args:
        query: what to detect, e.g. ``"a strawberry"``; a list of queries (a box scores its best
            query, as in ``post_process_object_detection``); or a template containing
            ``{prompt}``, filled in with each image's prompt (e.g. ``"a photo of {prompt}"``).
        mode: ``"add"`` (reward = detection scalar) or ``"remove"`` (reward = minus the scalar).
        reduce: how the per-box scores become one number per image: ``"max"`` (default, the
            confidence of the best box), ``"softmax"`` (``temperature * (logsumexp(s / temperature)
            - log N)``: between the mean and the max, the gradient reaches every high-scoring box) or
            ``"count"`` (sum of the box scores: a soft, uncalibrated count).
        temperature: softness of ``reduce="softmax"`` (in score units; smaller is closer to the max).
        target_count: with ``reduce="count"`` and ``mode="add"``: reward ``-(count - target_count)**2``.
        path: a hub id or a local ``save_pretrained`` folder (config, weights, tokenizer and
            preprocessor files); default ``google/owlvit-base-patch32``. OWLv2 checkpoints work too.
        device: torch device of the model (default: CUDA when available, else CPU). Scores are
            returned on the images' device.
        dtype: ``"float32"`` (default), ``"bfloat16"`` or ``"float16"`` for the model.

    Examples:
        >>> reward = OwlViTReward(query="a strawberry", mode="add")   # doctest: +SKIP
        >>> scores = reward(images, ["a fruit bowl"] * len(images))    # doctest: +SKIP
        >>> scores.shape, bool(((0 <= scores) & (scores <= 1)).all())  # doctest: +SKIP
        (torch.Size([2]), True)
    """

    name = "owlvit"
    differentiable = True

    def __init__(
        self,
        query: str | Sequence[str] | None = None,
        mode: str = "add",
        reduce: str = "max",
        temperature: float = 0.05,
        target_count: float | None = None,
        path: str | os.PathLike[str] | None = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        self.queries = _normalise_queries(query)
        if mode not in _MODES:
            raise ValueError(f"owlvit: mode must be 'add' or 'remove', got {mode!r}")
        if reduce not in _REDUCTIONS:
            raise ValueError(f"owlvit: reduce must be one of 'max', 'softmax', 'count', got {reduce!r}")
        try:
            temperature = float(temperature)
        except (TypeError, ValueError):
            raise ValueError(f"owlvit: temperature must be a positive number, got {temperature!r}") from None
        if not (temperature > 0 and math.isfinite(temperature)):
            raise ValueError(f"owlvit: temperature must be a positive number, got {temperature!r}")
        if target_count is not None:
            if reduce != "count":
                raise ValueError(f"owlvit: target_count needs reduce='count' (got reduce={reduce!r})")
            if mode != "add":
                raise ValueError(
                    "owlvit: target_count already says which way to go (reward -(count - target)^2); use mode='add'"
                )
            target_count = float(target_count)
            if not (target_count >= 0 and math.isfinite(target_count)):
                raise ValueError(f"owlvit: target_count must be a number >= 0, got {target_count!r}")
        self.query = query
        self.mode = mode
        self.reduce = reduce
        self.temperature = temperature
        self.target_count = target_count
        self.path = str(path) if path is not None else DEFAULT_MODEL
        self.templated = any(PROMPT_PLACEHOLDER in q for q in self.queries)

        import torch

        self.device = resolve_device(device, auto=True)
        self.dtype = resolve_dtype(dtype, "owlvit")
        self.model, self.tokenizer, self.arch = self._load_model()
        self._setup_preprocessing()
        self._cache: dict[str, Tensor] = {}
        with torch.no_grad():
            # Tokenised and embedded once; with a {prompt} template, once per distinct prompt.
            self._fixed = None if self.templated else self._embed(self.queries)

    # ------------------------------------------------------------------ loading
    def _load_model(self) -> tuple[Any, Any, str]:
        from transformers import AutoConfig, AutoTokenizer

        src = self.path
        local = os.path.isdir(src)
        try:
            config = AutoConfig.from_pretrained(src)
        except (OSError, ValueError) as exc:
            if local or os.path.exists(src):
                raise OSError(
                    f"owlvit: cannot read an OWL-ViT checkpoint from {src!r} ({first_line(exc)}); "
                    "pass a folder written by save_pretrained (config.json, weights, tokenizer files)"
                ) from None
            raise OSError(
                f"owlvit: cannot load {src!r} from the Hugging Face hub or its local cache "
                f"({type(exc).__name__}); offline, download it once with `hf download {src}` "
                "or pass path='/folder/saved/with/save_pretrained'"
            ) from None
        model_type = getattr(config, "model_type", None)
        archs = list(getattr(config, "architectures", None) or [])
        what = f"{model_type!r} model" + (f" ({', '.join(archs)})" if archs else "")
        if model_type not in ("owlvit", "owlv2"):
            raise ValueError(
                f"owlvit: {src!r} holds a {what}, not an OWL-ViT detector; pass an OWL-ViT or OWLv2 "
                "object-detection checkpoint such as google/owlvit-base-patch32"
            )
        if archs and not any(a.endswith("ForObjectDetection") for a in archs):
            raise ValueError(
                f"owlvit: {src!r} holds a {what} without the detection heads; pass an "
                f"{'Owlv2' if model_type == 'owlv2' else 'OwlViT'}ForObjectDetection checkpoint"
            )
        if model_type == "owlv2":
            from transformers import Owlv2ForObjectDetection as Detector
        else:
            from transformers import OwlViTForObjectDetection as Detector
        try:
            model, info = Detector.from_pretrained(src, dtype=self.dtype, output_loading_info=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise OSError(f"owlvit: cannot load the detector weights from {src!r} ({first_line(exc)})") from None
        missing = [k for k in info.get("missing_keys", []) if "position_ids" not in k]
        mismatched = info.get("mismatched_keys", [])
        if missing or mismatched:
            bad = (missing or [m[0] if isinstance(m, tuple) else m for m in mismatched])[:3]
            raise ValueError(
                f"owlvit: {src!r} is not a complete {Detector.__name__} checkpoint "
                f"({len(missing)} missing and {len(mismatched)} mismatched weights, e.g. {', '.join(bad)})"
            )
        try:
            tokenizer = AutoTokenizer.from_pretrained(src)
        except (OSError, ValueError) as exc:
            raise OSError(
                f"owlvit: {src!r} has no usable tokenizer ({first_line(exc)}); save the processor "
                "(OwlViTProcessor.save_pretrained) into the same folder"
            ) from None
        freeze(model).to(self.device)
        return model, tokenizer, model_type

    def _setup_preprocessing(self) -> None:
        from draftsdk.image_ops import CLIP_MEAN, CLIP_STD

        vision = self.model.config.vision_config
        size = (vision.image_size, vision.image_size)
        self.mean, self.std = CLIP_MEAN, CLIP_STD
        self.resample = "bilinear" if self.arch == "owlv2" else "bicubic"
        self.crop: tuple[int, int] | None = None
        try:  # the checkpoint's preprocessor_config.json, when it has one
            from transformers import AutoImageProcessor

            proc = AutoImageProcessor.from_pretrained(self.path)
        except Exception:  # noqa: BLE001 - no preprocessor file: the model config's defaults above
            proc = None
        if proc is not None:
            psize = getattr(proc, "size", None)
            if psize is not None and psize.get("height") and psize.get("width"):
                size = (int(psize["height"]), int(psize["width"]))
            self.mean = tuple(float(m) for m in proc.image_mean)
            self.std = tuple(float(s) for s in proc.image_std)
            if self.arch == "owlvit":
                resample = getattr(proc, "resample", 3)
                resample = getattr(resample, "value", resample)  # PILImageResampling or int
                self.resample = {2: "bilinear", 3: "bicubic"}.get(resample if isinstance(resample, int) else 3, "bicubic")
                crop = getattr(proc, "crop_size", None)
                if getattr(proc, "do_center_crop", False) and crop and (crop["height"], crop["width"]) != size:
                    self.crop = (int(crop["height"]), int(crop["width"]))
        self.input_size = size
        final = self.crop or size
        self.interpolate_pos = tuple(final) != (vision.image_size, vision.image_size)

    # ------------------------------------------------------------------ text side
    def _embed(self, texts: list[str]) -> Tensor:
        """Projected, L2-normalised text embeddings ``(len(texts), D)``, as OwlViTModel computes them."""
        import torch

        limit = int(self.model.config.text_config.max_position_embeddings)
        for text in texts:
            n = len(self.tokenizer(text)["input_ids"])
            if n > limit:
                raise ValueError(
                    f"owlvit: query {text!r} is {n} tokens; the OWL-ViT text encoder takes at most {limit} "
                    "(start and end tokens included): shorten it"
                )
        tok = self.tokenizer(texts, padding="max_length", max_length=limit, return_tensors="pt")
        base = getattr(self.model, self.arch)
        out = base.text_model(
            input_ids=tok["input_ids"].to(self.device), attention_mask=tok["attention_mask"].to(self.device)
        )
        emb = base.text_projection(out.pooler_output)
        return emb / torch.linalg.norm(emb, ord=2, dim=-1, keepdim=True)

    def _query_embeds(self, prompts: Sequence[str], batch: int) -> Tensor:
        import torch

        if self._fixed is not None:
            return self._fixed.unsqueeze(0).expand(batch, -1, -1)
        texts = [[q.replace(PROMPT_PLACEHOLDER, p) for q in self.queries] for p in prompts]
        missing = sorted({t for row in texts for t in row if t not in self._cache})
        if missing:
            if len(self._cache) + len(missing) > _CACHE_LIMIT:
                self._cache.clear()
            with torch.no_grad():
                for text, emb in zip(missing, self._embed(missing)):
                    self._cache[text] = emb
        return torch.stack([torch.stack([self._cache[t] for t in row]) for row in texts])

    # ------------------------------------------------------------------ image side
    def preprocess(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> the model's normalised ``pixel_values`` (differentiable)."""
        import torch.nn.functional as F

        from draftsdk.image_ops import center_crop, normalize, resize

        if self.arch == "owlv2":
            # Owlv2ImageProcessor: pad bottom/right to a square with 0, Gaussian anti-aliasing
            # (sigma = (factor - 1) / 2) when shrinking, bilinear resize without antialias.
            import torchvision.transforms.v2.functional as tvF

            h, w = images.shape[-2:]
            side = max(h, w)
            x = F.pad(images, (0, side - w, 0, side - h), value=0.0)
            factors = [side / self.input_size[0], side / self.input_size[1]]
            sigmas = [max((f - 1) / 2, 0.0) for f in factors]
            if all(s > 0 for s in sigmas):
                kernel = [2 * math.ceil(3 * s) + 1 for s in sigmas]
                x = tvF.gaussian_blur(x, kernel, sigma=sigmas)
            x = resize(x, self.input_size, mode="bilinear", antialias=False)
        else:
            x = resize(images, self.input_size, mode=self.resample, antialias=True)
            if self.crop is not None:
                x = center_crop(x, self.crop[0], rounding="round")
        return normalize(x, self.mean, self.std)

    def _logits(self, images: Tensor, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        import torch

        # Pre-processing in float32 (antialiased resizes have no bf16 CPU kernel), the model in its dtype.
        pixels = self.preprocess(images.to(self.device, torch.float32)).to(self.dtype)
        feature_map = self.model.image_embedder(pixel_values=pixels, interpolate_pos_encoding=self.interpolate_pos)[0]
        b, h, w, d = feature_map.shape
        feats = feature_map.reshape(b, h * w, d)
        queries = self._query_embeds(prompts, b).to(feats.dtype)
        logits = self.model.class_predictor(feats, queries)[0]
        return logits.float(), feature_map

    def box_scores(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        """Per-box detection scores ``(B, num_boxes)``: sigmoid of the best query's logit per box.

        These are the ``scores`` of ``post_process_object_detection`` (before thresholding).
        """
        check_inputs(images, prompts, who="owlvit")
        return self._logits(images, prompts)[0].max(dim=-1).values.sigmoid()

    def detect(self, images: Tensor, prompts: Sequence[str], threshold: float = 0.1) -> list[dict[str, Tensor]]:
        """Boxes above ``threshold`` for each image: ``scores``, ``labels`` (query index) and ``boxes``.

        Boxes are ``(x0, y0, x1, y1)`` in pixels of the input images. For inspection and plots, not
        for training (no gradient is kept).
        """
        import torch

        check_inputs(images, prompts, who="owlvit")
        with torch.no_grad():
            logits, feature_map = self._logits(images, prompts)
            feats = feature_map.reshape(feature_map.shape[0], -1, feature_map.shape[-1])
            boxes = self.model.box_predictor(feats, feature_map, self.interpolate_pos).float()
        best = logits.max(dim=-1)
        scores = best.values.sigmoid()
        cx, cy, bw, bh = boxes.unbind(-1)
        h, w = images.shape[-2:]
        side_h, side_w = (max(h, w), max(h, w)) if self.arch == "owlv2" else (h, w)
        corners = torch.stack([(cx - bw / 2) * side_w, (cy - bh / 2) * side_h, (cx + bw / 2) * side_w, (cy + bh / 2) * side_h], -1)
        out = []
        for s, lab, box in zip(scores, best.indices, corners):
            keep = s > threshold
            out.append({"scores": s[keep].cpu(), "labels": lab[keep].cpu(), "boxes": box[keep].cpu()})
        return out

    def reduce_scores(self, scores: Tensor) -> Tensor:
        """``(B, num_boxes)`` box scores -> ``(B,)`` detection scalar (before the ``mode`` sign)."""
        if self.reduce == "max":
            return scores.max(dim=1).values
        if self.reduce == "softmax":
            t = self.temperature
            return t * (scores.div(t).logsumexp(dim=1) - math.log(scores.shape[1]))
        count = scores.sum(dim=1)
        if self.target_count is not None:
            return -((count - self.target_count) ** 2)
        return count

    def __call__(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        """Score ``images`` (B, 3, H, W) in [0, 1]; returns ``(B,)``, higher is better for ``mode``."""
        check_inputs(images, prompts, who="owlvit")
        scores = self._logits(images, prompts)[0].max(dim=-1).values.sigmoid()
        value = self.reduce_scores(scores)
        if self.mode == "remove":
            value = -value
        return value.to(images.device)

    def __repr__(self) -> str:
        extra = f", temperature={self.temperature}" if self.reduce == "softmax" else ""
        extra += f", target_count={self.target_count}" if self.target_count is not None else ""
        return (
            f"OwlViTReward(query={self.query!r}, mode={self.mode!r}, reduce={self.reduce!r}{extra}, "
            f"path={self.path!r})"
        )


META = RewardMeta(
    inputs="image + text query",
    score_range=(0.0, 1.0),
    memory_gb=0.3,
    reference="transformers OwlViTProcessor + post_process_object_detection, from PIL images",
    parity_tol=1e-2,
    weights_license="Apache-2.0 (google/owlvit-base-patch32)",
    homepage="https://huggingface.co/google/owlvit-base-patch32",
)
"""What the plugin directory shows about ``owlvit``."""


@draftsdk.hookimpl
def register_rewards(register):  # type: ignore[no-untyped-def]
    register(OwlViTReward, meta=META)
