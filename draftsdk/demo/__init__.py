"""The embedded digits world: a tiny text-to-image diffusion model of handwritten digits.

Everything here is trained on CPU from scikit-learn's bundled 8x8 digits by
``python -m draftsdk.demo.pretrain`` and shipped in ``draftsdk/demo/weights/``:

- ``data``: the digits as 16x16 dark-ink-on-white images with a fixed held-out split;
- ``model``: the Stable-Diffusion-shaped pipeline (UNet, autoencoder, CLIP text encoder, DDIM);
- ``classifier``: the small CNN behind the demo rewards;
- ``rewards``: ``DigitTarget`` (``digit-target``) and ``DigitBoldness`` (``digit-boldness``);
- ``evaluate``: an independent judge (RBF SVM) and a digit-likeness measure (PCA residual).

Submodules are imported on demand; importing this package loads nothing heavy.
"""
