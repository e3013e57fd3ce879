"""A model card per registered version, written when its promotion is decided.

The card is markdown: the decision and every named check, the data window (the split), the
metrics next to the re-scored champion's and the popularity baseline's on the same test window,
the data-quality summary of the night (the gate's recorded verdict) and the code revision. It is
stored three ways, so whichever one a reader has, they find it:

* ``model_card.md`` in the candidate's MLflow run (artifact);
* the registered model version's description (and tags ``model_card``, ``git_revision``);
* ``$RECSYS_HOME/decisions/model_cards/<model>-v<version>.md``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from core.revision import git_revision
from core.settings import Settings

# The SQL model registry stores descriptions up to 5000 characters.
MAX_DESCRIPTION = 4900


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "–" if value is None else str(value)


def quality_summary(settings: Settings, run_date: str) -> list[str]:
    from quality.gate import load_verdict

    try:
        verdict = load_verdict(settings, date.fromisoformat(run_date))
    except (ValueError, OSError, KeyError) as exc:
        return [f"- verdict unreadable: {exc}"]
    if verdict is None:
        return ["- no quality-gate verdict recorded for this date"]
    lines = [
        f"- gate: **{'passed' if verdict.passed else 'FAILED'}**",
        "- suites: " + ", ".join(f"{k} {'ok' if v else 'failed'}" for k, v in sorted(verdict.suites.items())),
        f"- failed critical expectations: {len(verdict.failed_critical)}",
        f"- failed warnings: {len(verdict.failed_warnings)}",
    ]
    lines += [f"  - {f}" for f in (verdict.failed_critical + verdict.failed_warnings)[:10]]
    lines.append(f"- Data Docs: `{verdict.data_docs_index}`")
    return lines


def render_model_card(settings: Settings, record: dict[str, Any], revision: str | None = None) -> str:
    """The markdown card of a decision record (what :func:`registry.promotion.apply_decision` wrote)."""
    name = record.get("registered_model_name") or settings.registered_model_name
    version = record["candidate_version"]
    metrics = record.get("metrics") or {}
    cand = metrics.get("candidate") or {}
    pop = metrics.get("popularity") or {}
    champ = metrics.get("champion_rescored") or {}
    split = record.get("split") or {}
    status = "promoted to champion" if record.get("promote") else "not promoted"
    lines = [
        f"# Model card: {name} v{version}",
        "",
        f"- model: `{record.get('candidate_model_name') or '?'}`, MLflow run `{record.get('candidate_run_id')}`",
        f"- run date: {record.get('run_date')}; decided {record.get('decided_at')}",
        f"- decision: **{status}**; champion before v{record.get('champion_version_before')}, "
        f"after v{record.get('champion_version_after')}",
        f"- code revision: `{revision or 'unknown'}`",
        "",
        "## Data window",
        "",
    ]
    keys = ("protocol", "protocol_reason", "as_of", "val_start", "test_start", "max_event_time", "test_days",
            "val_days", "max_sequence_length", "n_users", "n_events", "n_items", "n_train_sequences",
            "n_train_interactions", "n_val_examples", "n_test_examples", "n_train_sessions",
            "n_val_sessions", "n_test_sessions", "exclude_seen", "exclude_seen_reason", "repeat_share_val")
    lines += [f"- {k}: {split[k]}" for k in keys if k in split] or ["- (not recorded)"]
    champion_label = (f"champion v{record.get('champion_version_before')} (re-scored)"
                      if champ else "champion")
    lines += ["", "## Metrics on the same held-out test window", "",
              f"| metric | candidate | {champion_label} | popularity |", "|---|---:|---:|---:|"]
    for metric in sorted(set(cand) | set(pop) | set(champ)):
        lines.append(f"| {metric} | {_fmt(cand.get(metric))} | {_fmt(champ.get(metric))} | {_fmt(pop.get(metric))} |")
    paired = record.get("paired_test") or {}
    if paired:
        gain = paired.get("relative_gain")
        lower, upper = paired.get("interval") or (None, None)
        lines += ["", "## Against the champion (paired test)", "",
                  f"- {paired.get('n_paired_examples')} paired test examples, {paired.get('metric')} per example: "
                  f"candidate {_fmt(paired.get('candidate_mean'))}, champion {_fmt(paired.get('champion_mean'))}",
                  f"- relative gain: {'n/a' if gain is None else f'{gain:+.2%}'} "
                  f"(minimum {float(paired.get('min_gain') or 0):+.2%})",
                  f"- mean difference {_fmt(paired.get('mean_difference'))}, "
                  f"{float(paired.get('confidence') or 0):.0%} paired-bootstrap interval "
                  f"[{_fmt(lower)}, {_fmt(upper)}] ({paired.get('bootstrap_samples')} resamples, "
                  f"seed {paired.get('seed')})"]
    lines += ["", "## Promotion checks", "", "| check | passed | detail |", "|---|---|---|"]
    for check in record.get("checks", []):
        detail = str(check.get("detail", "")).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {check['name']} | {'yes' if check['passed'] else '**no**'} | {detail} |")
    lines += ["", "## Data quality (the night's gate)", "", *quality_summary(settings, str(record.get("run_date")))]
    return "\n".join(lines) + "\n"


def write_model_card(settings: Settings, record: dict[str, Any], client=None) -> str:
    """Render the card and store it (run artifact, version description + tags, local file)."""
    from training.tracking import mlflow_client

    client = client or mlflow_client(settings)
    name = record.get("registered_model_name") or settings.registered_model_name
    version = str(record["candidate_version"])
    revision = git_revision(settings.code_revision)
    text = render_model_card(settings, record, revision)

    folder = settings.decisions_dir / "model_cards"
    folder.mkdir(parents=True, exist_ok=True)
    model = record.get("candidate_model_name") or "model"
    path = Path(folder / f"{name}-v{version}.md")
    path.write_text(text, encoding="utf-8")

    if record.get("candidate_run_id"):
        client.log_text(record["candidate_run_id"], text, "model_card.md")
    client.update_model_version(name, version, description=text[:MAX_DESCRIPTION])
    client.set_model_version_tag(name, version, "model_card", str(path))
    client.set_model_version_tag(name, version, "model_kind", model)
    if revision:
        client.set_model_version_tag(name, version, "git_revision", revision)
    return str(path)
