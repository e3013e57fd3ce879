"""The temporal split: no leakage, de-duplication, vocabulary, truncation, as-of cutoff."""

from __future__ import annotations

from datetime import timedelta

import pytest

from training.data import ItemVocabulary, collapse_consecutive, load_split, load_user_sequences


def _planted_rows(synth):
    """Ring users plus users whose events sit at known places around the split boundaries."""
    end = synth.END
    T = end  # the anchor user's last event is the latest event: test window = (T - 1d, T]
    rows = synth.ring_rows(end=end - timedelta(hours=2))
    day = timedelta(days=1)
    rows += [
        ("anchor", ["a1", "a2"], [T - 5 * day, T]),
        # An item first seen in the test window: it must never reach any input or the vocabulary.
        ("leaky_test", ["item_001", "item_002", "FUTURE_TEST", "item_003"],
         [T - 4 * day, T - 3 * day, T - timedelta(hours=3), T - timedelta(hours=1)]),
        # An item first seen in the validation window: a validation target, never a training item.
        ("leaky_val", ["item_005", "item_006", "FUTURE_VAL", "item_008"],
         [T - 4 * day, T - 3 * day, T - day - timedelta(hours=3), T - timedelta(hours=2)]),
        # An event after the as_of day: must be ignored entirely (not even the max event time).
        ("after_as_of", ["item_010", "item_011", "AFTER_AS_OF"],
         [T - 4 * day, T - 3 * day, T + 2 * day]),
    ]
    return rows


def test_split_has_no_leakage(settings, synth):
    synth.write(settings.warehouse_path, _planted_rows(synth))
    split = load_split(settings, as_of=synth.END.date())

    assert split.max_event_time == synth.END
    assert split.test_start == synth.END - timedelta(days=1)
    assert split.val_start == synth.END - timedelta(days=2)

    vocab_items = set(split.vocab.item_ids)
    train_items = {split.vocab.item(i) for seq in split.train_sequences for i in seq}
    val_inputs = {i for ex in split.val_examples for i in ex.input_items}
    test_inputs = {i for ex in split.test_examples for i in ex.input_items}
    for planted in ("FUTURE_TEST", "FUTURE_VAL", "AFTER_AS_OF"):
        assert planted not in vocab_items
        assert planted not in train_items
        assert planted not in val_inputs
    assert "FUTURE_TEST" not in test_inputs
    assert "AFTER_AS_OF" not in test_inputs and "AFTER_AS_OF" not in {
        ex.target_item for ex in split.val_examples + split.test_examples
    }

    # Every input item of every example happened strictly before its window opened.
    events = {}
    for user_id, items, times in _planted_rows(synth):
        events[user_id] = list(zip(items, times))
    for examples, start in ((split.val_examples, split.val_start), (split.test_examples, split.test_start)):
        assert examples
        for ex in examples:
            before = {i for i, t in events[ex.user_id] if t < start}
            assert set(ex.input_items) <= before, ex

    by_user_val = {ex.user_id: ex for ex in split.val_examples}
    by_user_test = {ex.user_id: ex for ex in split.test_examples}
    # Validation target: the first item inside the validation window, from the training-period input.
    assert by_user_val["leaky_val"].target_item == "FUTURE_VAL"
    assert by_user_val["leaky_val"].input_items == ("item_005", "item_006")
    # Test target: the first item of the test window, input = everything before the test window.
    assert by_user_test["leaky_test"].target_item == "FUTURE_TEST"
    assert by_user_test["leaky_test"].input_items == ("item_001", "item_002")
    assert by_user_test["leaky_val"].input_items == ("item_005", "item_006", "FUTURE_VAL")
    # A target unseen in training stays an example (a guaranteed miss), it is not dropped.
    assert "FUTURE_TEST" not in split.vocab and split.vocab.index("FUTURE_TEST") == 0


def test_as_of_cutoff_gives_the_previous_night(settings, synth):
    synth.write(settings.warehouse_path, synth.ring_rows())
    night1 = load_split(settings, as_of=synth.DAY1)
    night2 = load_split(settings, as_of=synth.DAY2)
    assert night1.max_event_time.date() == synth.DAY1
    assert night2.max_event_time.date() == synth.DAY2
    assert night1.test_start < night2.test_start
    sequences = load_user_sequences(settings, as_of=synth.DAY1)
    assert all(t.date() <= synth.DAY1 for s in sequences for t in s.event_times)


def test_consecutive_duplicates_collapse(settings, synth):
    T = synth.END
    h = timedelta(hours=1)
    rows = synth.ring_rows(end=T - 2 * h) + [
        ("dup", ["x", "x", "y", "y", "y", "x", "z", "z"],
         [T - 90 * h, T - 89 * h, T - 80 * h, T - 79 * h, T - 78 * h, T - 70 * h, T - 3 * h, T - 2 * h]),
        ("anchor", ["x", "y"], [T - 60 * h, T]),
    ]
    synth.write(settings.warehouse_path, rows)
    split = load_split(settings)
    test = {ex.user_id: ex for ex in split.test_examples}["dup"]
    # x x y y y x -> x y x (a later return to x is kept); z z -> z, and only one target.
    assert test.input_items == ("x", "y", "x")
    assert test.target_item == "z"
    assert collapse_consecutive(["a", "a", "b", "a"], [1, 2, 3, 4]) == (["a", "b", "a"], [1, 3, 4])


def test_inputs_are_truncated_to_max_sequence_length(settings, synth):
    T = synth.END
    h = timedelta(hours=1)
    long_items = [synth.item(i) for i in range(30)]
    long_times = [T - (100 - i) * h for i in range(30)]
    rows = synth.ring_rows(end=T - 2 * h) + [
        ("long", long_items + ["item_030"], long_times + [T - 5 * h]),
        ("anchor", ["a", "b"], [T - 60 * h, T]),
    ]
    synth.write(settings.warehouse_path, rows)
    split = load_split(settings)
    ex = {e.user_id: e for e in split.test_examples}["long"]
    assert len(ex.input_items) == settings.max_sequence_length == 20
    assert ex.input_items == tuple(long_items[-20:])
    # Training keeps the whole history (windows are cut later), not just the last 20 items.
    assert max(len(s) for s in split.train_sequences) >= 30


def test_vocabulary_maps_items_to_one_based_indices():
    vocab = ItemVocabulary.from_sequences([["b", "a"], ["c", "a"]])
    assert vocab.item_ids == ["a", "b", "c"]
    assert [vocab.index(i) for i in "abc"] == [1, 2, 3]
    assert vocab.index("unknown") == 0
    assert vocab.encode(["c", "unknown", "a"]) == [3, 1]
    assert vocab.item(2) == "b"
    with pytest.raises(IndexError):
        vocab.item(0)


def test_empty_training_period_is_an_error(settings, synth):
    T = synth.END
    synth.write(settings.warehouse_path, [("u", ["a", "b"], [T - timedelta(hours=3), T])])
    with pytest.raises(ValueError, match="no training events"):
        load_split(settings)


def test_both_protocols_produce_the_loops_split(settings, synth):
    from training.data import Split
    from training.loo import leave_one_out_split

    synth.write(settings.warehouse_path, synth.ring_rows())
    temporal = load_split(settings)
    loo = leave_one_out_split([("u", ["a", "b", "c", "d"])])
    assert isinstance(temporal, Split) and isinstance(loo, Split)
