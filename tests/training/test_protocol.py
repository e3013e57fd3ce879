"""The evaluation protocol fits the log: chosen from measured facts, the session protocol's
examples, gaps, the seen-item rule in evaluation and serving, and the evidence floors."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest
import torch

from training.data import EvalExample, UserSequence, temporal_split, window_starts
from training.evaluate import evaluate, repeat_share
from training.protocol import (
    LogFacts,
    LogSession,
    NotEnoughData,
    build_split,
    choose_plan,
    resolve_exclude_seen,
    session_split,
)

T0 = datetime(2026, 3, 1)


def session(sid: str, items: list[str], start: datetime, user: str | None = None) -> LogSession:
    return LogSession(sid, user or sid, tuple(items),
                      tuple(start + timedelta(minutes=i) for i in range(len(items))))


def anonymous_sessions(n_days: int = 6, per_day: int = 20) -> list[LogSession]:
    return [session(f"s{d}-{k}", ["a", "b", "c", "d"][: 2 + k % 3], T0 + timedelta(days=d, hours=k % 20))
            for d in range(n_days) for k in range(per_day)]


def test_a_session_only_log_gets_the_session_protocol_and_a_returning_one_the_user_protocol():
    plan = choose_plan(LogFacts.measure(anonymous_sessions()))
    assert plan.protocol == "session" and "rarely return" in plan.reason
    assert (plan.test_days, plan.val_days) == (1.0, 1.0)

    returning = [session(f"u{u}#{d}", ["a", "b"], T0 + timedelta(days=d), user=f"u{u}")
                 for u in range(10) for d in range(6)]
    facts = LogFacts.measure(returning)
    assert facts.returning_user_share == 1.0 and facts.sessions_per_user == 6.0
    assert choose_plan(facts).protocol == "user_temporal"
    # A setting or DAG Param forces it, and the windows.
    forced = choose_plan(facts, "session", test_days=2, val_days=0.5)
    assert (forced.protocol, forced.test_days, forced.val_days) == ("session", 2.0, 0.5)
    assert forced.reason.startswith("set explicitly")
    with pytest.raises(ValueError, match="unknown evaluation protocol"):
        choose_plan(facts, "leave_one_out")


def test_a_one_day_log_gets_windows_shrunk_to_fit_it():
    one_day = [session(f"s{k}", ["a", "b", "c"], T0 + timedelta(hours=k * 0.5)) for k in range(40)]
    plan = choose_plan(LogFacts.measure(one_day))
    assert plan.test_days == plan.val_days < 0.25 and "shrunk" in plan.reason
    split = session_split(one_day, max_len=10, test_days=plan.test_days, val_days=plan.val_days)
    assert split.train_sequences and split.val_examples and split.test_examples


def test_session_protocol_predicts_every_prefix_and_keeps_held_out_sessions_out_of_training():
    sessions = [
        session("train1", ["a", "b", "c"], T0),
        session("train2", ["b", "c", "d"], T0 + timedelta(hours=1)),
        session("val", ["a", "b", "a", "c"], T0 + timedelta(days=1, hours=5)),
        # ends in the test window although it starts before it: held out whole
        LogSession("test", "test", ("b", "NEW", "c", "d"), (T0 + timedelta(days=2, hours=23, minutes=59),
                                                            T0 + timedelta(days=3), T0 + timedelta(days=3, minutes=1),
                                                            T0 + timedelta(days=3, hours=1))),
        session("single", ["a"], T0 + timedelta(days=3)),
    ]
    split = session_split(sessions, max_len=2, test_days=1, val_days=1)
    assert split.vocab.item_ids == ["a", "b", "c", "d"]  # training sessions only
    assert [(e.input_items, e.target_item) for e in split.val_examples] == [
        (("a",), "b"), (("a", "b"), "a"), (("b", "a"), "c")]  # max_len 2 truncates the input
    # NEW (unseen in training) is dropped, the session length-1 one is dropped entirely
    assert [(e.input_items, e.target_item) for e in split.test_examples] == [
        (("b",), "c"), (("b", "c"), "d")]
    assert split.info()["n_test_sessions"] == 1 and split.info()["protocol"] == "session"


def test_a_gap_before_the_test_window_does_not_empty_validation():
    times = [T0 + timedelta(days=d, hours=h) for d in (0, 1, 2, 5) for h in (1, 12)]
    _, val_start, test_start = window_starts(times, 1, 1)
    assert test_start == T0 + timedelta(days=4, hours=12)
    assert val_start == T0 + timedelta(days=1, hours=12, microseconds=1)  # the day before the gap
    # no gap: the nominal windows
    dense = [T0 + timedelta(hours=h) for h in range(24 * 4)]
    _, val_start, test_start = window_starts(dense, 1, 1)
    assert test_start - val_start == timedelta(days=1)


def test_an_empty_held_out_window_is_a_named_refusal_not_a_crash():
    # the validation sessions hold only items training never saw: nothing is left to predict
    sessions = [session(f"s{k}", ["a", "b"], T0 + timedelta(days=k)) for k in range(3)] + [
        session("s3", ["q", "r"], T0 + timedelta(days=3, hours=12)),
        session("s4", ["a", "b"], T0 + timedelta(days=4, hours=23))]
    plan = choose_plan(LogFacts.measure(sessions), "session", test_days=1, val_days=1)
    with pytest.raises(NotEnoughData, match="validation window of the session protocol has no examples"):
        build_split(sessions, [], 10, plan)


def test_seen_items_are_kept_rankable_when_repeats_are_material():
    examples = [EvalExample("u", ("a", "b"), "a"), EvalExample("u", ("a",), "c"),
                EvalExample("u", ("c", "d"), "d"), EvalExample("u", ("b",), "a")]
    assert repeat_share(examples) == 0.5
    assert resolve_exclude_seen("auto", 0.5, 0.05)[0] is False
    assert resolve_exclude_seen("auto", 0.01, 0.05)[0] is True
    assert resolve_exclude_seen("true", 0.5, 0.05)[0] is True
    assert resolve_exclude_seen("false", 0.0, 0.05)[0] is False
    with pytest.raises(ValueError):
        resolve_exclude_seen("sometimes", 0.1, 0.05)


def test_the_evaluator_scores_a_repeated_target_only_when_seen_items_stay_rankable():
    def scorer(x):  # prefers item 1, which is the input and the target
        return torch.tensor([[float("-inf"), 3.0, 2.0, 1.0]]).expand(x.shape[0], -1)

    excluded = evaluate(scorer, [[1, 2]], [1], n_items=3, ks=(1,), k=1)
    kept = evaluate(scorer, [[1, 2]], [1], n_items=3, ks=(1,), k=1, exclude_seen=False)
    assert excluded["hr_at_1"] == 0.0 and kept["hr_at_1"] == 1.0


def test_a_repeat_heavy_user_log_resolves_to_keeping_seen_items():
    sequences = [UserSequence(f"u{u}", tuple(["x", "y"] * 4), tuple(T0 + timedelta(days=d) for d in range(8)))
                 for u in range(5)]
    sessions = [session(f"u{u}#{d}", ["x" if d % 2 == 0 else "y"], T0 + timedelta(days=d), user=f"u{u}")
                for u in range(5) for d in range(8)]
    plan = choose_plan(LogFacts.measure(sessions))
    split = build_split(sessions, sequences, 10, plan)
    assert split.protocol == "user_temporal" and split.exclude_seen is False
    assert split.info()["repeat_share_val"] == 1.0 and "stay rankable" in split.info()["exclude_seen_reason"]


def test_serving_follows_the_seen_item_rule_the_model_was_evaluated_under(settings):
    from training.recommender import Recommender
    from training.train import train_model

    sequences = [UserSequence(f"u{u}", ("x", "y", "z", "x", "y", "x"),
                              tuple(T0 + timedelta(days=d) for d in range(6))) for u in range(6)]
    for rule in (True, False):
        split = dataclasses.replace(temporal_split(sequences, max_len=10), exclude_seen=rule)
        result = train_model(settings, split, "repeat", checkpoint_path=settings.home / f"r{rule}.pt")
        model = Recommender(torch.load(result.checkpoint_path, weights_only=True))
        assert model.exclude_seen is rule
        top = [item for item, _ in model.recommend(["x", "y"], k=1)]
        assert top == (["z"] if rule else ["y"])  # the newest of the user's own items


def test_training_keeps_the_last_epoch_when_validation_is_too_small_to_select_on(settings, tiny_sasrec):
    from training.train import train_model

    sequences = [UserSequence(f"u{u}", tuple(f"i{(u + k) % 9}" for k in range(8)),
                              tuple(T0 + timedelta(hours=10 * k) for k in range(8))) for u in range(30)]
    split = temporal_split(sequences, max_len=10, test_days=0.5, val_days=0.5)
    assert 0 < len(split.val_examples) < 100
    result = train_model(settings, split, "sasrec", epochs=4, patience=1, min_val_examples=100,
                         model_config=tiny_sasrec, checkpoint_path=settings.home / "s.pt")
    assert result.best_epoch == result.epochs_run == 4


def test_promotion_refuses_a_decision_on_too_few_test_examples(settings):
    from registry.promotion import decide_promotion
    from serving.smoke import serves_in_api_path

    candidate = {"metrics": {"ndcg_at_10": 0.5, "coverage_at_10": 0.3}, "baseline_metrics": {"ndcg_at_10": 0.1},
                 "model_name": "sknn", "model_version": "1", "n_test_examples": 4, "n_items": 10,
                 "split": {"protocol": "user_temporal"}}
    decision = decide_promotion(settings.replace(min_eval_examples=200), "2026-03-08",
                                candidate, gate_passed=True, serving_check=serves_in_api_path)
    check = next(c for c in decision.checks if c["name"] == "enough_evaluation_examples")
    assert not decision.promote and not check["passed"]
    assert check["detail"].startswith("not enough evidence to promote: 4 test examples")



def test_the_training_cli_says_a_user_error_in_one_line(tmp_path):
    import os
    import subprocess
    import sys

    env = os.environ | {"RECSYS_HOME": str(tmp_path / "empty")}
    done = subprocess.run([sys.executable, "-m", "training.train", "--date", "2026-11-07", "--model", "auto"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: no warehouse at ") and "Traceback" not in done.stderr
