"""Run `python -m rlaif ...` under FSDP2 in CPU processes, for the FSDP test only.

Why: accelerate (1.16) turns an FSDP config into plain DDP (MULTI_CPU) when the processes have no GPU, so
without help an FSDP code path cannot run on a CPU-only CI machine. torch's FSDP2 (fully_shard) itself runs
on CPU over gloo; this wrapper sets accelerate's state to FSDP with the plugin its config describes (the two
things accelerate would have set on GPUs) and then runs rlaif's CLI unchanged. Everything after that is
accelerate's and rlaif's own FSDP2 code: fully_shard wrapping, DTensor parameters, gathered saves.
"""
import os
import runpy
import sys

import accelerate.state as state
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

_init = state.AcceleratorState.__init__


def _init_fsdp_on_cpu(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    if self.distributed_type == DistributedType.MULTI_CPU and os.environ.get("ACCELERATE_USE_FSDP") == "true":
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = FullyShardedDataParallelPlugin()     # read from the FSDP_* variables the launcher set


state.AcceleratorState.__init__ = _init_fsdp_on_cpu             # type: ignore[method-assign]
sys.argv = ["rlaif", *sys.argv[1:]]
runpy.run_module("rlaif", run_name="__main__", alter_sys=True)
