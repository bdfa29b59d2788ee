"""One data-parallel SmolVLM2 training step per GPU, for measuring the per-GPU peak.

Run by ``torchrun`` (one process per GPU), from the repository root::

    torchrun --standalone --nproc-per-node 2 -m benchmarks.gpu.dist_step \
        2.2B-le384-nogc-b1-i4-fsdp2 MODELS_DIR

Every rank builds the same model (``benchmarks.gpu.smolvlm_step.build_model``), then
wraps it as the case says: ``ddp`` is ``DistributedDataParallel`` with its defaults
(25 MB buckets, gradients copied into them: ``gradient_as_bucket_view=False``);
``fsdp`` is FSDP2: ``fully_shard`` on every vision encoder layer and every text
decoder layer, then on the whole model (the root keeps the embeddings, the connector,
the final norms and ``lm_head``), pure bf16 (no mixed-precision policy), resharding
after forward. Each rank feeds its own copy of the case's batch and measures its own
device; rank 0 prints every rank's result as one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from benchmarks.gpu.smolvlm_step import (
    StepCase,
    _phases,
    build_inputs,
    build_model,
    environment,
    make_optimizer,
    parameter_counts,
    training_step,
    unwrap,
)
from pytest_tokenguard.gpu.measure import GpuMeasure


def wrap(model: Any, case: StepCase, local_rank: int) -> Any:
    """DDP or FSDP2 around ``model``, as the module docstring says."""
    if case.sharding == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[local_rank])
    from torch.distributed.fsdp import fully_shard

    inner = unwrap(model).model
    for layer in inner.vision_model.encoder.layers:
        fully_shard(layer)
    for layer in inner.text_model.layers:
        fully_shard(layer)
    fully_shard(model)
    return model


def run(case: StepCase, folder: Path) -> dict[str, Any]:
    """Measure this rank's steady step; every rank's result is gathered on rank 0."""
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ["LOCAL_RANK"])
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    dist.init_process_group("nccl", device_id=device)
    world = dist.get_world_size()
    result: dict[str, Any] = {"rank": dist.get_rank(), "world_size": world}
    inputs = build_inputs(folder, case)
    result["seq_len"] = int(inputs["input_ids"].shape[1])
    result["tiles_per_sample"] = int(inputs["pixel_values"].shape[1])
    inputs = {key: value.to(device) for key, value in inputs.items()}
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
    try:
        model = build_model(folder, case, device)
        result.update(parameter_counts(model))
        model = wrap(model, case, local_rank)
        torch.cuda.synchronize(device)
        result["weights_bytes"] = int(torch.cuda.memory_allocated(device))
        optimizer = make_optimizer(model, case)
        with GpuMeasure(local_rank, empty_cache=False) as measure:
            result["loss_cold"] = training_step(model, optimizer, inputs)
        result["cold"] = measure.peak.to_dict()
        dist.barrier()
        with GpuMeasure(local_rank, empty_cache=False) as measure:
            result["loss"] = training_step(model, optimizer, inputs)
        result["steady"] = measure.peak.to_dict()
        dist.barrier()
        result["phases"] = _phases(model, optimizer, inputs, device)
        result["oom"] = False
    except torch.OutOfMemoryError as exc:
        result["oom"] = True
        result["error"] = str(exc).splitlines()[0]
        result["partial_torch_allocated"] = int(torch.cuda.max_memory_allocated(device))
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, result)
    dist.destroy_process_group()
    return {"ranks": gathered}


def main(argv: list[str]) -> None:
    case = StepCase.from_id(argv[0])
    folder = Path(argv[1]) / "HuggingFaceTB" / case.model
    outcome = run(case, folder)
    if int(os.environ.get("RANK", "0")) == 0:
        ranks = outcome["ranks"]
        first = ranks[0]
        from dataclasses import asdict

        record: dict[str, Any] = {"case": case.id, **asdict(case)}
        for key in ("seq_len", "tiles_per_sample", "parameters", "trainable_parameters"):
            if key in first:
                record[key] = first[key]
        record["ranks"] = ranks
        record["oom"] = any(rank.get("oom") for rank in ranks)
        steady = [rank["steady"] for rank in ranks if "steady" in rank]
        if len(steady) == len(ranks):
            # the per-GPU peak: the largest rank's, as the device that runs out first
            record["steady"] = max(steady, key=lambda peak: peak["torch_allocated"])
            record["phases"] = max(
                (rank["phases"] for rank in ranks), key=lambda p: p["peak_backward"]
            )
        record["environment"] = environment()
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
