"""Losses that need the global batch give, on 2 gloo ranks with half the batch each, what one process
gives on the whole batch: NT-Xent and MoCo v3 negatives, VICReg terms, Sinkhorn marginals."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ssl_tune import losses

N, D, K = 8, 6, 5


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {name: torch.randn(N, D, generator=g) for name in ("z1", "z2")} | {"scores": torch.randn(N, K, generator=g)}


def _losses(z1: torch.Tensor, z2: torch.Tensor, scores: torch.Tensor, distributed: bool) -> dict[str, torch.Tensor]:
    z1 = z1.clone().requires_grad_(True)
    out = {
        "nt_xent": losses.nt_xent(z1, z2, 0.5, distributed=distributed),
        "moco_v3": losses.moco_v3_contrastive(z1, z2, 0.2, distributed=distributed),
        "vicreg": losses.vicreg(z1, z2, distributed=distributed),
    }
    grads = torch.autograd.grad(sum(out.values()), z1)[0]
    out = {k: v.detach() for k, v in out.items()}
    out["grad"] = grads
    out["sinkhorn"] = losses.sinkhorn(scores, 0.1, 5, distributed=distributed)
    return out


def _worker(rank: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    x = _inputs()
    half = slice(rank * N // 2, (rank + 1) * N // 2)
    out = _losses(x["z1"][half], x["z2"][half], x["scores"][half], distributed=True)
    queue.put((rank, {k: v.numpy() for k, v in out.items()}))
    dist.barrier()
    dist.destroy_process_group()
    # Gloo's threads can abort the interpreter's teardown under load (pytorch/pytorch#179291): the
    # result is flushed, so leave without it.
    queue.close()
    queue.join_thread()
    os._exit(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_losses_match_the_whole_batch():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0

    x = _inputs()
    whole = _losses(x["z1"], x["z2"], x["scores"], distributed=False)
    for name in ("nt_xent", "moco_v3"):  # mean over this rank's anchors: the ranks' mean is the global mean
        mean = (results[0][name] + results[1][name]) / 2
        assert torch.allclose(torch.tensor(mean), whole[name], atol=1e-5), name
    for rank in (0, 1):  # VICReg gathers every term: each rank sees the whole-batch value
        assert torch.allclose(torch.tensor(results[rank]["vicreg"]), whole["vicreg"], atol=1e-4)
    codes = torch.cat([torch.tensor(results[0]["sinkhorn"]), torch.tensor(results[1]["sinkhorn"])])
    assert torch.allclose(codes, whole["sinkhorn"], atol=1e-5)
    # gradients flow back through the gather to each rank's own samples; DDP then averages over the 2 ranks
    grad = torch.cat([torch.tensor(results[0]["grad"]), torch.tensor(results[1]["grad"])]) / 2
    assert torch.allclose(grad, whole["grad"], atol=1e-5)
