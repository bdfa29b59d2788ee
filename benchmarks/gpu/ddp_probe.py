"""Where the extra DDP bucket set of the second step comes from (issue 10, item 4).

Run by ``torchrun`` (one process per GPU), from the repository root::

    torchrun --standalone --nproc-per-node 2 -m benchmarks.gpu.ddp_probe \
        256M-le384-nogc-b1-i4-fused-ddp2 MODELS_DIR [PAUSE_S]

The recorded ``256M-le384-nogc-b1-i4-fused-ddp2`` case peaks one bucket set (all
gradients, 0.48 GiB) higher in its second step than in its third; the 2.2B and 500M
DDP cases do not. ``DistributedDataParallel`` (``find_unused_parameters=False``) puts
every gradient into ONE bucket for the first iteration and rebuilds 25 MiB buckets in
the order the gradients became ready, at the start of the second forward
(``Reducer::rebuild_buckets``). The old flat bucket was the tensor of the first step's
all-reduce; ProcessGroupNCCL keeps the tensors of an asynchronous collective alive
(``stashed_for_allocator_safety_``) until its watchdog thread, which wakes every 100 ms,
sees the work complete, or until ``work.wait()``. DDP only waits on the work's future.

This probe runs the cold step, then steps 2 and 3 with the memory allocated at each
phase (the vision tower's forward pre-hook runs after DDP's pre-forward, i.e. after the
rebuild) and the seconds since the step began. ``PAUSE_S`` sleeps between step 1 and
step 2: if the extra set is the stashed first bucket, a pause longer than the watchdog's
period removes it. Rank 0 prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.gpu.smolvlm_step import (
    StepCase,
    build_inputs,
    build_model,
    environment,
    make_optimizer,
    training_step,
    unwrap,
)


def _probed_step(model: Any, optimizer: Any, inputs: dict[str, Any], device: Any
                 ) -> dict[str, Any]:
    """One step with ``(seconds, allocated)`` marks and the peaks of forward / backward."""
    import torch

    t0 = time.perf_counter()
    marks: dict[str, Any] = {}

    def mark(name: str) -> None:
        marks.setdefault(name, [round(time.perf_counter() - t0, 4),
                                int(torch.cuda.memory_allocated(device))])

    inner = unwrap(model).model
    handles = [inner.vision_model.register_forward_pre_hook(lambda *a: mark("vision_in")),
               inner.text_model.register_forward_hook(lambda *a: mark("text_out"))]
    try:
        torch.cuda.synchronize(device)
        mark("before_forward")
        torch.cuda.reset_peak_memory_stats(device)
        loss = model(**inputs).loss
        torch.cuda.synchronize(device)
        mark("after_forward")
        marks["peak_forward"] = int(torch.cuda.max_memory_allocated(device))
        torch.cuda.reset_peak_memory_stats(device)
        loss.backward()
        del loss
        torch.cuda.synchronize(device)
        mark("after_backward")
        marks["peak_backward"] = int(torch.cuda.max_memory_allocated(device))
        torch.cuda.reset_peak_memory_stats(device)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize(device)
        mark("after_step")
        marks["peak_step"] = int(torch.cuda.max_memory_allocated(device))
    finally:
        for handle in handles:
            handle.remove()
    return marks


def run(case: StepCase, folder: Path, pause: float) -> dict[str, Any]:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    local_rank = int(os.environ["LOCAL_RANK"])
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    dist.init_process_group("nccl", device_id=device)
    inputs = build_inputs(folder, case)
    inputs = {key: value.to(device) for key, value in inputs.items()}
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
    model = build_model(folder, case, device)
    grad_bytes = sum(p.numel() * p.element_size() for p in model.parameters()
                     if p.requires_grad)
    before_wrap = int(torch.cuda.memory_allocated(device))
    model = DistributedDataParallel(model, device_ids=[local_rank])
    torch.cuda.synchronize(device)
    result: dict[str, Any] = {"rank": dist.get_rank(), "pause_s": pause,
                              "gradient_bytes": grad_bytes,
                              "wrap_added": int(torch.cuda.memory_allocated(device)) - before_wrap}
    optimizer = make_optimizer(model, case)
    torch.cuda.reset_peak_memory_stats(device)
    training_step(model, optimizer, inputs)
    result["cold_peak"] = int(torch.cuda.max_memory_allocated(device))
    data = model._get_ddp_logging_data()
    result["buckets_first_iteration"] = str(data.get("bucket_sizes", ""))[:200]
    dist.barrier()
    if pause:
        time.sleep(pause)
    result["step2"] = _probed_step(model, optimizer, inputs, device)
    data = model._get_ddp_logging_data()
    result["buckets_rebuilt"] = str(data.get("rebuilt_bucket_sizes", ""))[:400]
    dist.barrier()
    result["step3"] = _probed_step(model, optimizer, inputs, device)
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, result)
    dist.destroy_process_group()
    return {"case": case.id, "ranks": gathered}


def main(argv: list[str]) -> None:
    case = StepCase.from_id(argv[0])
    folder = Path(argv[1]) / "HuggingFaceTB" / case.model
    pause = float(argv[2]) if len(argv) > 2 else 0.0
    outcome = run(case, folder, pause)
    if int(os.environ.get("RANK", "0")) == 0:
        outcome["environment"] = environment()
        print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
