"""The report and the model card say how the night measured its candidate, and say plainly when
there was not enough evidence to promote."""

from __future__ import annotations

from pipeline.report_page import evaluation_summary
from registry.model_card import render_model_card

REFUSED = {
    "candidate_version": "3", "promote": False, "run_date": "2026-03-08",
    "split": {"protocol": "session", "protocol_reason": "users rarely return (0% ...)", "n_val_examples": 3,
              "n_test_examples": 4, "exclude_seen": False, "exclude_seen_reason": "25.0% of validation ...",
              "n_test_sessions": 2},
    "checks": [{"name": "enough_evaluation_examples", "passed": False,
                "detail": "not enough evidence to promote: 4 test examples under the session protocol, "
                          "fewer than the floor of 200 (RECSYS_MIN_EVAL_EXAMPLES)"}],
}


def test_the_report_names_the_protocol_counts_rule_and_the_refusal():
    text = evaluation_summary(REFUSED)
    assert "<b>session</b> protocol" in text and "3 validation and 4 test examples" in text
    assert "kept in the rankings" in text
    assert "<b>Not enough evidence to promote</b>: not enough evidence to promote: 4 test examples" in text
    promoted = REFUSED | {"checks": [{"name": "enough_evaluation_examples", "passed": True, "detail": "ok"}]}
    assert "Not enough evidence" not in evaluation_summary(promoted)


def test_the_model_card_records_the_protocol_and_the_seen_item_rule(settings):
    card = render_model_card(settings, REFUSED)
    for line in ("- protocol: session", "- n_test_examples: 4", "- exclude_seen: False", "- n_test_sessions: 2"):
        assert line in card
