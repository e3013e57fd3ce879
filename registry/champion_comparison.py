"""The ``beats_champion`` check: does the candidate really beat the champion?

Both are scored on the same test examples (the champion re-scored, the candidate from its
registered checkpoint), example by example (:func:`training.evaluate.ndcg_per_example_on`), and a
paired bootstrap of the per-example NDCG@10 differences (:func:`training.evaluate.paired_bootstrap`,
a fixed seed) gives an interval for the mean difference. The candidate wins when the interval's
lower end is above zero AND its relative gain reaches the minimum. Equal models (a re-run of the
same night) differ on no example: the interval is [0, 0] and the check fails.
"""

from __future__ import annotations

from typing import Any

# The metric promotion decides on (registry.promotion and the nightly report use it too).
METRIC = "ndcg_at_10"
METRIC_K = 10
# The bootstrap's resamples are drawn from this seed, so re-deciding a night gives the same answer.
BOOTSTRAP_SEED = 0


def paired_test(
    champion, champion_version: str, checkpoint, examples, exclude_seen: bool,
    min_gain: float, confidence: float, samples: int,
) -> tuple[bool, str, dict[str, Any]]:
    """Candidate (its registered ``checkpoint``) vs champion on the same ``examples``: passed,
    detail, and the numbers the decision file keeps."""
    import torch

    from training.evaluate import ndcg_per_example_on, paired_bootstrap
    from registry.versions import load_recommender

    if checkpoint is None:
        return False, "the candidate's registered checkpoint could not be downloaded: cannot compare", {}
    if not examples:
        return False, "no test examples to compare on", {}
    try:
        candidate = load_recommender(checkpoint)
    except Exception as exc:  # noqa: BLE001 - serves_in_api_path reports the load failure too
        return False, f"the candidate's registered checkpoint cannot be loaded: {type(exc).__name__}: {exc}", {}

    def per_example(model) -> torch.Tensor:
        # The night's seen-item rule for both: the same ranking task, example by example.
        return ndcg_per_example_on(model.score, examples, model.vocab, model.max_len, k=METRIC_K,
                                   device=model.device, exclude_seen=exclude_seen)  # [E]

    cand, champ = per_example(candidate), per_example(champion)  # [E], [E]
    diffs = cand - champ  # [E]
    mean_diff, lower, upper = paired_bootstrap(diffs, samples, confidence, BOOTSTRAP_SEED)
    cand_mean, champ_mean = cand.mean().item(), champ.mean().item()
    # Relative to the champion; a champion that scores 0 has no relative gain, any win counts.
    gain = mean_diff / champ_mean if champ_mean > 0 else None
    gain_ok = mean_diff > 0 if gain is None else gain >= min_gain
    significant = lower > 0  # all-zero differences give lower == 0: a tie never passes
    improved, worse = int((diffs > 0).sum()), int((diffs < 0).sum())
    numbers = {
        "metric": METRIC, "n_paired_examples": len(examples), "candidate_mean": cand_mean,
        "champion_mean": champ_mean, "mean_difference": mean_diff, "relative_gain": gain,
        "min_gain": min_gain, "confidence": confidence, "interval": [lower, upper],
        "bootstrap_samples": samples, "seed": BOOTSTRAP_SEED, "examples_improved": improved,
        "examples_worse": worse, "gain_ok": gain_ok, "significant": significant,
    }
    if not improved and not worse:
        verdict = "a tie (every example scores the same): not a win"
    elif not significant:
        verdict = "the interval does not exclude zero: not a significant win"
    elif not gain_ok:
        verdict = "significant, but below the minimum gain"
    else:
        verdict = "a real win"
    gain_text = "n/a (champion scores 0)" if gain is None else f"{gain:+.2%}"
    detail = (
        f"candidate {METRIC}={cand_mean:.4f} vs champion v{champion_version} {champ_mean:.4f}, both "
        f"re-scored on the same {len(examples)} test examples ({improved} better, {worse} worse): "
        f"relative gain {gain_text} (minimum {min_gain:+.2%}); mean per-example difference "
        f"{mean_diff:+.5f}, {confidence:.0%} paired-bootstrap interval [{lower:+.5f}, {upper:+.5f}] "
        f"({samples} resamples, seed {BOOTSTRAP_SEED}); {verdict}"
    )
    return gain_ok and significant, detail, numbers
