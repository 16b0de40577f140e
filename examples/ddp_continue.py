"""Outgrowing one machine: continue a minicnn network on PyTorch's DistributedDataParallel.

    minicnn train --out runs/first                       # 1. train here, with minicnn
    torchrun --nproc_per_node 2 examples/ddp_continue.py \\
        --checkpoint runs/first/best.npz --steps 200 --out runs/ddp
                                                         # 2. continue on N processes
    minicnn evaluate --checkpoint runs/ddp/ddp.npz       # 3. back in minicnn

Each process loads the same checkpoint, turns the network into a torch.nn.Module
(minicnn.interop.to_torch), wraps it in DistributedDataParallel, and trains on its
own shard of the training split (DistributedSampler), the gradients averaged across
processes at every step. Rank 0 turns the result back into a minicnn network
(minicnn.interop.from_torch) and saves it as a minicnn checkpoint, so evaluate,
predict and Grad-CAM work on it as on any other. Every rank writes the SHA-256 of its
final weights to OUT/rank<r>.sha256: DDP keeps the replicas identical, and the hashes
show it.

The backend is gloo on CPUs (this file runs on a laptop) and NCCL where every
process has a GPU (--backend nccl; put each rank on its own GPU with LOCAL_RANK).
"""
import argparse
import hashlib
import os

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from minicnn import interop
from minicnn.xray.checkpoint import load_checkpoint, save_checkpoint
from minicnn.data.datasets import open_splits


def arguments():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="a minicnn checkpoint (best.npz)")
    p.add_argument("--data", help="its data (default: what it was trained on)")
    p.add_argument("--steps", type=int, default=100, help="training steps per process")
    p.add_argument("--batch-size", type=int, default=32, help="images per process and step")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam's learning rate")
    p.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    p.add_argument("--out", required=True, help="folder for ddp.npz and the weight hashes")
    return p.parse_args()


def training_tensors(ck, data):
    """The checkpoint's training split, normalised as the network expects."""
    cfg = ck.train_config
    synthetic = data == "synthetic"
    splits = open_splits(data, ck.image_size[0], ck.channels,
                         seed=cfg.get("seed", 0) if synthetic else 0,
                         synthetic_sizes=cfg.get("synthetic_sizes") if synthetic else None)
    train = splits.train
    images = train.get_batch(np.arange(len(train)))[0]
    x = (images - ck.norm_mean.reshape(1, -1, 1, 1)) / ck.norm_std.reshape(1, -1, 1, 1)
    return TensorDataset(torch.from_numpy(np.ascontiguousarray(x, np.float32)),
                         torch.from_numpy(np.asarray(train.labels, np.int64)))


def weights_sha256(module):
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def main():
    args = arguments()
    dist.init_process_group(args.backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}"
                          if args.backend == "nccl" else "cpu")
    ck = load_checkpoint(args.checkpoint)
    model = interop.to_torch(ck.build_model("cpu")).to(device).train()
    ddp = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    data = training_tensors(ck, args.data or ck.train_config.get("data", "synthetic"))
    sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=0)
    loader = DataLoader(data, batch_size=args.batch_size, sampler=sampler, drop_last=True)
    optimizer = torch.optim.Adam(ddp.parameters(), lr=args.lr)
    step, epoch = 0, 0
    while step < args.steps:
        sampler.set_epoch(epoch)
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(ddp(x.to(device)), y.to(device))
            optimizer.zero_grad()
            loss.backward()                   # DDP averages the gradients of all ranks here
            optimizer.step()
            step += 1
            if rank == 0 and (step % 10 == 0 or step == args.steps):
                print(f"step {step}/{args.steps}  loss {loss.item():.4f}  ({world} processes)")
            if step == args.steps:
                break
        epoch += 1
    # batch norm's running statistics are buffers, not gradients: each rank updated its own
    # in the last forward; DDP copies rank 0's to the others before every forward, so do
    # that once more here and every rank ends with the network rank 0 saves
    for buffer in model.buffers():
        dist.broadcast(buffer, 0)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"rank{rank}.sha256"), "w") as f:
        f.write(weights_sha256(model) + "\n")
    if rank == 0:
        back = interop.from_torch(model.cpu()).eval()
        path = os.path.join(args.out, "ddp.npz")
        save_checkpoint(path, back, norm_mean=ck.norm_mean, norm_std=ck.norm_std,
                        classes=ck.classes, positive_class=ck.positive_class,
                        threshold=ck.threshold, min_input_size=ck.min_input_size,
                        train_config=ck.train_config, data_info=ck.data_info)
        print(f"saved {path}: evaluate it with  minicnn evaluate --checkpoint {path}")
    # every rank waits for rank 0's save: a rank that tears its connections down while
    # another still holds them can abort at exit (gloo)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
