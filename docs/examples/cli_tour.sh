# The command-line side of the tutorial and the how-tos, in order. From the repository root:
#   bash docs/examples/cli_tour.sh
# (needs a GPU, the SD 1.5 weights and the reward plugins' weights). The docs tests run each
# command offline on a tiny random-weight pipeline with a reward that needs no weights:
# see docs/run_examples.py.
set -euo pipefail

# --8<-- [start:rewards]
draftsdk rewards
# --8<-- [end:rewards]

# --8<-- [start:plugins]
draftsdk plugins
# --8<-- [end:plugins]

# --8<-- [start:train]
draftsdk train docs/examples/sd15_aesthetic.toml
# --8<-- [end:train]

# --8<-- [start:override]
draftsdk train docs/examples/sd15_aesthetic.toml \
    --set 'rewards={"pickscore": 1.0}' --set output_dir=runs/sd15-pickscore
# --8<-- [end:override]

# --8<-- [start:resume]
draftsdk train docs/examples/sd15_aesthetic.toml \
    --set resume=true --set steps=3000
# --8<-- [end:resume]

# --8<-- [start:lora_info]
draftsdk lora info runs/sd15-aesthetic/lora.safetensors
# --8<-- [end:lora_info]

# --8<-- [start:sample]
draftsdk sample --model stable-diffusion-v1-5/stable-diffusion-v1-5 \
    --lora runs/sd15-aesthetic/lora.safetensors \
    --prompt "a cat" --prompt "a rabbit" --seeds 0,1 \
    --scales 0,0.5,1,1.2 -o alpha.png
# --8<-- [end:sample]

# --8<-- [start:mix]
draftsdk lora mix \
    runs/sd15-aesthetic/lora.safetensors:0.7 \
    runs/sd15-pickscore/lora.safetensors:0.5 \
    -o mixed.safetensors
# --8<-- [end:mix]

# --8<-- [start:sample_mix]
draftsdk sample --model stable-diffusion-v1-5/stable-diffusion-v1-5 \
    --lora runs/sd15-aesthetic/lora.safetensors:0.7 \
    --lora runs/sd15-pickscore/lora.safetensors:0.5 \
    --prompt "a cat" --seeds 0,1,2 --scales 0,0.5,1 -o mix.png
# --8<-- [end:sample_mix]

# --8<-- [start:score]
draftsdk score --reward aesthetic --prompt "a cat" alpha.png mix.png
# --8<-- [end:score]
