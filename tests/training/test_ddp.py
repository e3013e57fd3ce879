"""Data-parallel training: two gloo processes through torchrun end with identical weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from training.distributed import DistContext, shard

TINY = {"d_model": 16, "n_heads": 1, "n_layers": 1, "dropout": 0.1}


def test_shard_is_a_padded_disjoint_partition():
    order = torch.tensor([4, 0, 3, 1, 2])
    parts = [shard(order, DistContext(rank=r, world_size=2)) for r in range(2)]
    assert [len(p) for p in parts] == [3, 3]  # padded by wrapping around: same steps per rank
    assert sorted(torch.cat(parts).tolist()) == [0, 1, 2, 3, 4, 4]
    assert torch.equal(shard(order, DistContext()), order)


def test_two_gloo_processes_end_with_identical_weights(tmp_path):
    lines = []
    for u in range(1, 41):
        start = u % 20 + 1
        lines.append(f"{u} " + " ".join(str((start + k) % 20 + 1) for k in range(6 + u % 4)))
    data = tmp_path / "Tiny.txt"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    env = dict(os.environ, RECSYS_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "training.train", "--loo", str(data), "--model", "sasrec", "--epochs", "2",
           "--batch-size", "8", "--max-len", "10", "--device", "cpu", "--no-progress",
           "--out", str(out), "--model-config", json.dumps(TINY)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    assert summary["world_size"] == 2 and summary["epochs_run"] == 2
    ckpt = torch.load(out / "sasrec" / "checkpoint.pt", weights_only=True)
    assert ckpt["ddp"]["world_size"] == 2 and ckpt["ddp"]["ranks_identical"]
    assert len(ckpt["ddp"]["rank_fingerprints"]) == 2
    assert ckpt["train"]["world_size"] == 2 and len(ckpt["history"]) == 2
    # Each rank ran half of the windows per epoch (plus padding), so a step count check:
    assert ckpt["train"]["train_windows"] > 0
