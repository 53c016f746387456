"""`w2v` as one DistributedDataParallel process: the multi-GPU code path on a single device.

w2v forms no process group for a single process (there is nothing to synchronise), so on a
one-GPU machine the DDP wrapper and the engine's collectives (gradient all-reduce, the summed
step statistics, the stop-signal vote, the RNG states gathered into checkpoints) would never
run on NCCL. This wrapper makes the one process a member of a real group of one: it joins the
group that torchrun describes (NCCL on a GPU, gloo on a CPU) and hands the engine a `Dist` that
says it is distributed. Everything else is the normal `w2v` command line:

    torchrun --standalone --nproc-per-node 1 tests/one_rank_ddp.py pretrain --train ... --out ...

A test process can patch `w2vcli.train.distributed.setup` with `setup_one_rank_group` itself
(with RANK/WORLD_SIZE/LOCAL_RANK and W2V_DIST_INIT=file://... set).
"""

from __future__ import annotations

import os
import sys

import torch.distributed as dist

from w2vcli.train import distributed


_w2v_setup = distributed.setup


class OneRankGroup(distributed.Dist):
    @property
    def enabled(self) -> bool:  # a group of one still runs DDP and the collectives
        return True


def setup_one_rank_group(cfg) -> distributed.Dist:
    d = _w2v_setup(cfg)  # the device torchrun's LOCAL_RANK names; no group for one process
    cuda = d.device.type == "cuda"
    dist.init_process_group("nccl" if cuda else "gloo", init_method=os.environ.get("W2V_DIST_INIT", "env://"),
                            rank=d.rank, world_size=d.world_size, device_id=d.device if cuda else None)  # fmt: skip
    print(f"one-rank group: backend {dist.get_backend()}, device {d.device}, world size {dist.get_world_size()}",
          flush=True)  # fmt: skip
    return OneRankGroup(d.rank, d.world_size, d.local_rank, d.device)


if __name__ == "__main__":
    if int(os.environ.get("WORLD_SIZE", "0")) != 1:
        sys.exit("run under torchrun with --nproc-per-node 1")
    if os.environ.get("W2V_TEST_DETERMINISTIC"):  # to compare with a run made so in the test process
        import torch

        torch.use_deterministic_algorithms(True)
    distributed.setup = setup_one_rank_group  # the engine looks it up for each run
    from w2vcli.cli import main

    sys.argv = ["w2v", *sys.argv[1:]]
    main()
