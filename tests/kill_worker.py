"""Run by test_reliability.py: `draftsdk train`, killed with SIGKILL in the middle of its 2nd checkpoint write."""

import os
import signal
import sys

import draftsdk.checkpoint
from draftsdk.cli import main

real_save = draftsdk.checkpoint.torch.save
calls = []


def save_then_die(obj, f, *args, **kwargs):
    calls.append(1)
    if len(calls) == 2:  # lora.safetensors of checkpoint 2 is already in its temporary folder
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *args, **kwargs)


draftsdk.checkpoint.torch.save = save_then_die
sys.exit(main(["train", *sys.argv[1:]]))
