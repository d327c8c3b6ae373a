import draftsdk
from draftsdk.testing import save_tiny_pipeline

# A tiny random-weight Stable Diffusion folder (2 MB) and tiny run sizes:
# every block on this page runs as shown, offline, on a CPU, in seconds
# (the images are noise). For real results:
#   MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5" and QUICK = {}
MODEL = str(save_tiny_pipeline("models/tiny-sd"))
QUICK = dict(num_inference_steps=4, batch_size=1, steps=1, eval_seeds=[0],
             mixed_precision="no")
