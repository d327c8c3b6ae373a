"""Test helpers for code that uses the ``owlvit`` reward: a tiny random-weight detector, offline."""

from __future__ import annotations

from pathlib import Path

__all__ = ["IMAGE_SIZE", "save_tiny_detector"]

IMAGE_SIZE = 64  # the tiny detector's square input


def save_tiny_detector(path: Path, *, v2: bool = False, seed: int = 0) -> Path:
    """Build a ~100k-parameter OWL-ViT (or OWLv2) detector plus its processor and save both to ``path``.

    Its square input is 64 px, (64 / 16)^2 = 16 boxes. Random class heads give logits of +-100 (every
    score saturates at 0 or 1), so the logit shift/scale heads are scaled down to give scores spread
    over (0, 1), like a real detector's. Pass the folder as ``model=`` to the ``owlvit`` reward.

    Examples:
        >>> import tempfile, draftsdk
        >>> folder = save_tiny_detector(Path(tempfile.mkdtemp()) / "tiny-owlvit")  # doctest: +SKIP
        >>> reward = draftsdk.get_reward("owlvit", model=str(folder), query="a cat", device="cpu")  # doctest: +SKIP
    """
    import torch
    from transformers import (
        OwlViTConfig,
        OwlViTForObjectDetection,
        OwlViTImageProcessor,
        OwlViTProcessor,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    from draftsdk.testing import tiny_clip_tokenizer

    torch.manual_seed(seed)
    tok = tiny_clip_tokenizer(1000, model_max_length=16)
    text = dict(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=16, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    vision = dict(
        image_size=IMAGE_SIZE, patch_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4,
    )
    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    if v2:
        model = Owlv2ForObjectDetection(Owlv2Config(text_config=text, vision_config=vision, projection_dim=32))
        processor = Owlv2Processor(image_processor=Owlv2ImageProcessor(size=size), tokenizer=tok)
    else:
        model = OwlViTForObjectDetection(OwlViTConfig(text_config=text, vision_config=vision, projection_dim=32))
        processor = OwlViTProcessor(image_processor=OwlViTImageProcessor(size=size, crop_size=size), tokenizer=tok)
    with torch.no_grad():
        model.class_head.logit_shift.weight.mul_(0.15)
        model.class_head.logit_scale.weight.mul_(0.15)
    model.eval().save_pretrained(path)
    processor.save_pretrained(path)
    return path
