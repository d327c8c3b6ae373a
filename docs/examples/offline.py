"""Work without network access: save a self-contained pipeline folder once, load it by path.

Shown on docs/troubleshooting.md (after docs/examples/quick_setup.py), whose code blocks the docs
tests run in order (docs/run_examples.py).
"""

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
