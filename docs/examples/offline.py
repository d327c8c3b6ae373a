"""Work without network access: save a self-contained pipeline folder once, load it by path.

Run: python docs/examples/offline.py
(DRAFTSDK_EXAMPLE_MODEL points the docs tests at a tiny random-weight pipeline:
docs/run_examples.py.)
"""

import os

import draftsdk

MODEL = os.environ.get("DRAFTSDK_EXAMPLE_MODEL", "stable-diffusion-v1-5/stable-diffusion-v1-5")

# --8<-- [start:save]
# With network access: download once (MODEL is the hub id), save one folder.
pipe = draftsdk.load_pipeline(MODEL)
pipe.save_pretrained("models/sd15")     # copy this folder to the offline machine
# --8<-- [end:save]

# --8<-- [start:load]
# On the offline machine, with HF_HUB_OFFLINE=1 so that nothing tries the network:
pipe = draftsdk.load_pipeline("models/sd15")
# or, in a config file: model = "models/sd15"
config = draftsdk.TrainConfig(model="models/sd15", output_dir="runs/offline")
# --8<-- [end:load]

# --8<-- [start:missing]
try:
    draftsdk.load_pipeline("example-org/a-model-that-was-never-downloaded")
except draftsdk.DraftError as exc:
    print(exc)
    # cannot load the pipeline '...': it is not a local folder and not in the
    # Hugging Face cache ...; pass a folder saved with save_pretrained, ...
# --8<-- [end:missing]
