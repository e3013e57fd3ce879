"""A synthetic large catalog as a real checkpoint: the serving path cannot tell it from a trained one.

Training a model on a million items does not fit the 2-core machine, and retrieval does not need
a good model, only one shaped like a trained one. Learned item embeddings form clusters (items
bought together end up near each other) with uneven norms (popular items score higher), and a
trained model's user vector points towards the neighbourhood of what the user just looked at.
So the checkpoint here is the real architecture (``sasrec`` by default, any neural model of the
zoo) at its initialisation, with its item table replaced by clustered embeddings; histories
stay within one or a few clusters. With the blocks at their small initial weights the last
hidden state is dominated by the newest item's embedding, which gives the in-distribution
queries of a trained model. Tests and ``benchmarks.serving_catalog`` both build from here.

:func:`register_checkpoint` logs such a checkpoint to an MLflow run and registers it as
``training.tracking.train_and_log`` does; :func:`promote` runs the real promotion step
(:func:`registry.promotion.apply_decision`, which builds the retrieval index) on a decision whose
one check says plainly what passed it instead of the night's checks.
"""

from __future__ import annotations

import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

N_POPULAR = 100


def item_id(i: int) -> str:
    """Vocabulary index ``i`` (1..N) -> the item's id."""
    return f"item_{i:07d}"


def cluster_of(i: int, n_clusters: int) -> int:
    return (i - 1) % n_clusters


def clustered_embeddings(n_items: int, dim: int, n_clusters: int, seed: int = 0,
                         scale: float = 0.05, spread: float = 0.6, norm_sigma: float = 0.2) -> torch.Tensor:
    """``[N + 1, D]``: item ``i`` is near centre ``cluster_of(i)``, its norm log-normally spread;
    row 0 (padding) is zero."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_clusters, dim, generator=generator)  # [K, D]
    labels = torch.arange(n_items) % n_clusters  # [N], cluster_of(1..N)
    table = centres[labels] + spread * torch.randn(n_items, dim, generator=generator)  # [N, D]
    norms = torch.exp(norm_sigma * torch.randn(n_items, 1, generator=generator))  # [N, 1]
    return torch.cat([torch.zeros(1, dim), scale * table * norms])  # [N + 1, D]


def synthetic_checkpoint(n_items: int, dim: int = 64, n_clusters: int | None = None, seed: int = 0,
                         model_name: str = "sasrec", max_len: int = 50, exclude_seen: bool = True,
                         **model_config: Any) -> dict[str, Any]:
    """A checkpoint dict ``training.recommender.Recommender`` loads, with clustered item rows."""
    from training.models import build_model, make_config

    torch.manual_seed(seed)
    config = make_config(model_name, n_items=n_items, max_len=max_len, d_model=dim, **model_config)
    model = build_model(model_name, config)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    table = clustered_embeddings(n_items, dim, n_clusters or max(10, n_items // 500), seed)  # [N + 1, D]
    rows = state["item_emb.weight"].shape[0]  # BERT4Rec has one row more: its [MASK]
    state["item_emb.weight"][: n_items + 1] = table
    if rows > n_items + 1:
        state["item_emb.weight"][n_items + 1:] = 0.0
    if "out_emb.weight" in state:  # an untied GRU4Rec scores with its own table
        state["out_emb.weight"] = table.clone()
    popular = list(range(1, min(N_POPULAR, n_items) + 1))
    return {
        "model_name": model_name, "config": asdict(config), "state_dict": state,
        "item_ids": [item_id(i) for i in range(1, n_items + 1)],
        "popular_item_ids": [item_id(i) for i in popular],
        "popular_item_counts": [N_POPULAR + 1 - i for i in popular],
        "metrics": {}, "split": {"exclude_seen": exclude_seen, "max_sequence_length": max_len,
                                 "protocol": "synthetic"},
        "train": {"synthetic": "clustered item embeddings, blocks at initialisation"},
    }


def save_checkpoint(path: Path, checkpoint: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def histories(n_users: int, n_items: int, n_clusters: int | None = None, seed: int = 0,
              min_len: int = 5, max_len: int = 30) -> list[list[str]]:
    """Each user's recent items, oldest first, drawn from one to three clusters."""
    n_clusters = n_clusters or max(10, n_items // 500)
    per_cluster = max(1, n_items // n_clusters)
    rng = random.Random(seed)
    out = []
    for _ in range(n_users):
        clusters = [rng.randrange(n_clusters) for _ in range(rng.randint(1, 3))]
        items = []
        for _ in range(rng.randint(min_len, max_len)):
            c = rng.choice(clusters)
            i = 1 + c + n_clusters * rng.randrange(per_cluster)  # an item of cluster c
            items.append(item_id(min(i, n_items)))
        out.append(items)
    return out


def register_checkpoint(settings, checkpoint: dict[str, Any], workdir: Path) -> str:
    """``checkpoint`` as a new registered version; returns its number."""
    from training.tracking import (CHECKPOINT_ARTIFACT_DIR, CHECKPOINT_FILE, ensure_registered_model,
                                   get_or_create_experiment, mlflow_client)

    client = mlflow_client(settings)
    run = client.create_run(get_or_create_experiment(client, settings))
    path = save_checkpoint(workdir / run.info.run_id / CHECKPOINT_FILE, checkpoint)
    client.log_artifact(run.info.run_id, str(path), artifact_path=CHECKPOINT_ARTIFACT_DIR)
    path.unlink()  # the artifact store holds it now
    client.set_terminated(run.info.run_id, "FINISHED")
    ensure_registered_model(client, settings.registered_model_name)
    version = client.create_model_version(settings.registered_model_name,
                                          source=f"{run.info.artifact_uri}/{CHECKPOINT_ARTIFACT_DIR}",
                                          run_id=run.info.run_id, tags={"model_name": checkpoint["model_name"]})
    return str(version.version)


def promote(settings, version: str, check: str) -> dict[str, Any]:
    """Promote ``version`` through ``apply_decision`` with the one passed check ``check``;
    returns the decision file's content."""
    from registry.decision_record import artifact_digest
    from registry.promotion import PromotionDecision, apply_decision
    from registry.versions import champion_version, download_registered_checkpoint

    digest = artifact_digest(download_registered_checkpoint(settings, version))
    decision = PromotionDecision(
        promote=True, checks=[{"name": check, "passed": True, "detail": "synthetic catalog"}],
        candidate_version=version, champion_version=champion_version(settings), metrics={},
        run_date=f"synthetic-v{version}", candidate_artifact_sha256=digest)
    record = apply_decision(settings, decision)
    if not record["promote"]:
        raise RuntimeError(f"v{version} not promoted: {record['reasons']}")
    return record
