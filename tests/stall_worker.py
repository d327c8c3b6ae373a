"""Two processes, one of which stops answering: the other's collective must fail within the timeout."""

import os
import sys
import time

from draftsdk.distributed import DistContext
from draftsdk.errors import DraftError

ctx = DistContext.from_env("cpu", timeout_s=float(sys.argv[1]))
ctx.barrier()  # both are up
if ctx.rank == 1:
    time.sleep(float(sys.argv[2]))  # a stopped rank (SIGSTOP, a debugger, a hung data loader)
    sys.exit(0)
start = time.monotonic()
try:
    ctx.any(False, __import__("torch").device("cpu"))
except DraftError as exc:
    print(f"{time.monotonic() - start:.1f} {exc}", flush=True)
    os._exit(3)
os._exit(0)
