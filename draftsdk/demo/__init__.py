"""The embedded digits world: a tiny text-to-image diffusion model of handwritten digits.

Everything here is trained on CPU from scikit-learn's bundled 8x8 digits by
``python -m draftsdk.demo.pretrain`` and shipped in ``draftsdk/demo/weights/``:

- ``data``: the digits as 16x16 dark-ink-on-white images with a fixed held-out split;
- ``model``: the Stable-Diffusion-shaped pipeline (UNet, autoencoder, CLIP text encoder, DDIM);
- ``classifier``: the small CNN behind the demo rewards;
- ``rewards``: ``DigitTarget`` (``digit-target``) and ``DigitBoldness`` (``digit-boldness``);
- ``evaluate``: an independent judge (RBF SVM) and a digit-likeness measure (PCA residual);
- ``flow_model``: the same world as a rectified-flow model (an SD3-shaped transformer over the same
  autoencoder), ``draftsdk:digits-flow``, trained by ``python -m draftsdk.demo.pretrain_flow``.

Submodules are imported on demand; importing this package loads nothing heavy.
"""
