"""Run by test_reliability.py under torchrun: train from a config, then save this rank's LoRA tensors."""

import sys
from pathlib import Path

import torch
from peft.utils import get_peft_model_state_dict

import draftsdk

config = draftsdk.TrainConfig.from_file(sys.argv[1])
trainer = draftsdk.Trainer(config.model, draftsdk.combine(config.rewards), config)
trainer.fit()
state = get_peft_model_state_dict(trainer.denoiser, adapter_name="draftsdk")
torch.save({k: v.detach().clone() for k, v in state.items()}, Path(sys.argv[2]) / f"rank{trainer.dist.rank}.pt")
