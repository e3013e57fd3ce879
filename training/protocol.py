"""Which evaluation protocol fits a log, and the session protocol itself.

Two protocols, both full-catalog next-item ranking (:mod:`training.evaluate`):

* ``user_temporal`` (:func:`training.data.temporal_split`): one global time cut; a user's first
  item in the validation / test window is predicted from everything the user did before it. It
  needs users who come back: on a log where the user IS the session, almost no user has both a
  history before the cut and an event after it, and the night is decided on a handful of
  examples.
* ``session`` (the session-based literature: session-rec, GRU4Rec, SR-GNN): sessions are placed
  by their last event; those ending in the last ``test_days`` are the test set, the ``val_days``
  before them validation, the rest training. Every prefix of a held-out session predicts its
  next item; items never seen in training are dropped from held-out sessions and sessions left
  with fewer than two items are dropped.

``auto`` picks from measured facts of the log (:class:`LogFacts`): the user-level protocol when
at least ``MIN_RETURNING_SHARE`` of users are active on more than one day and users average at
least ``MIN_SESSIONS_PER_USER`` sessions, the session protocol otherwise. Window lengths default
to one day each, shrunk to a quarter of the log's span for a log shorter than four days (a
one-day log still gets a training period and two windows).

Seen items: on the validation examples the share of next items already in the input is measured
(:func:`training.evaluate.repeat_share`); with ``exclude_seen=auto`` a share of at least
``repeat_share_threshold`` keeps seen items rankable, in evaluation and in serving alike (the rule
travels in the checkpoint's split info).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any, Sequence

from core.errors import UserError
from core.settings import Settings
from training.data import (
    EvalExample,
    ItemVocabulary,
    Split,
    TemporalSplit,
    UserSequence,
    _day_end,
    _to_naive_utc,
    collapse_consecutive,
    load_user_sequences,
    read_warehouse,
    temporal_split,
    window_starts,
)
from training.evaluate import repeat_share
from training.item_side import ItemAttributes
from training.item_table import load_item_attribute_mapping

PROTOCOLS = ("user_temporal", "session")
MIN_RETURNING_SHARE = 0.2
MIN_SESSIONS_PER_USER = 1.5
SHORT_LOG_DAYS = 4.0  # under this span, windows shrink so training keeps half of the log


class NotEnoughData(UserError, ValueError):
    """The log cannot be split under the chosen protocol: a condition the user fixes (more data,
    longer windows, another date), so the CLI says it in one line and Airflow does not retry."""


@dataclass(frozen=True)
class LogSession:
    session_id: str
    user_id: str
    item_ids: tuple[str, ...]
    event_times: tuple[datetime, ...]


@dataclass(frozen=True)
class LogFacts:
    n_users: int
    n_sessions: int
    n_events: int
    span_days: float
    returning_user_share: float  # users active on more than one UTC day
    sessions_per_user: float

    @classmethod
    def measure(cls, sessions: Sequence[LogSession]) -> "LogFacts":
        days: dict[str, set] = {}
        for s in sessions:
            days.setdefault(s.user_id, set()).update(t.date() for t in s.event_times)
        times = [t for s in sessions for t in (s.event_times[0], s.event_times[-1])]
        span = (max(times) - min(times)).total_seconds() / 86400 if times else 0.0
        n_users = len(days)
        return cls(
            n_users=n_users,
            n_sessions=len(sessions),
            n_events=sum(len(s.item_ids) for s in sessions),
            span_days=round(span, 4),
            returning_user_share=round(sum(len(d) > 1 for d in days.values()) / max(n_users, 1), 4),
            sessions_per_user=round(len(sessions) / max(n_users, 1), 4),
        )


@dataclass(frozen=True)
class EvalPlan:
    protocol: str
    test_days: float
    val_days: float
    reason: str
    facts: dict[str, Any] = field(default_factory=dict)


def choose_plan(facts: LogFacts, protocol: str = "auto", test_days: float = 0.0,
                val_days: float = 0.0) -> EvalPlan:
    """The protocol and window lengths for a log with these facts (explicit values win)."""
    if protocol not in ("auto", *PROTOCOLS):
        raise ValueError(f"unknown evaluation protocol {protocol!r}; known: auto, {', '.join(PROTOCOLS)}")
    returning = facts.returning_user_share >= MIN_RETURNING_SHARE
    revisits = facts.sessions_per_user >= MIN_SESSIONS_PER_USER
    measured = (f"{facts.returning_user_share:.0%} of {facts.n_users} users active on more than one day, "
                f"{facts.sessions_per_user:.2f} sessions per user")
    if protocol != "auto":
        reason = f"set explicitly ({measured})"
    elif returning and revisits:
        protocol, reason = "user_temporal", f"users return: {measured}"
    else:
        protocol = "session"
        reason = (f"users rarely return ({measured}; user_temporal needs >= {MIN_RETURNING_SHARE:.0%} "
                  f"and >= {MIN_SESSIONS_PER_USER})")
    window = 1.0 if facts.span_days >= SHORT_LOG_DAYS else max(facts.span_days / SHORT_LOG_DAYS, 1 / 24)
    if window < 1.0 and not (test_days and val_days):
        reason += f"; windows shrunk to {window * 24:.1f} h for a {facts.span_days:.2f}-day log"
    return EvalPlan(protocol, float(test_days or window), float(val_days or window), reason, asdict(facts))


def load_sessions(settings: Settings, as_of: date | str | None = None) -> list[LogSession]:
    """The warehouse's sessions (``int_events_sessionized``) with events before the end of
    ``as_of``, each in time order, ordered by session id."""
    cutoff = _day_end(as_of) if as_of is not None else None
    rows = read_warehouse(
        settings,
        """
        SELECT CAST(session_id AS VARCHAR), CAST(user_id AS VARCHAR),
               list(CAST(item_id AS VARCHAR) ORDER BY event_time, event_id),
               list(CAST(event_time AS TIMESTAMP) ORDER BY event_time, event_id)
        FROM int_events_sessionized
        GROUP BY session_id, user_id
        ORDER BY session_id
        """,
    )
    sessions = []
    for session_id, user_id, items, times in rows:
        pairs = [(_to_naive_utc(t), i) for t, i in zip(times, items)]
        if cutoff is not None:
            pairs = [p for p in pairs if p[0] < cutoff]
        if pairs:
            sessions.append(LogSession(session_id, user_id, tuple(p[1] for p in pairs), tuple(p[0] for p in pairs)))
    return sessions


@dataclass
class SessionSplit(TemporalSplit):
    """A :class:`~training.data.TemporalSplit`'s fields, with one training sequence per training
    session and one example per prefix of every held-out session; ``n_sessions`` counts the
    sessions kept per window."""

    n_sessions: dict[str, int] = field(default_factory=dict)  # train / val / test
    protocol: str = "session"

    def info(self) -> dict:
        return super().info() | {f"n_{k}_sessions": v for k, v in self.n_sessions.items()}


def session_split(sessions: Sequence[LogSession], max_len: int, test_days: float = 1.0,
                  val_days: float = 1.0, as_of: date | str | None = None) -> SessionSplit:
    """The session protocol (module docstring): no held-out session's event reaches training."""
    if test_days <= 0 or val_days <= 0:
        raise ValueError("test_days and val_days must be positive")
    if not sessions:
        raise NotEnoughData("no events to split (no sessions, or all after the as_of day)")
    max_event_time, val_start, test_start = window_starts(
        (t for s in sessions for t in s.event_times), test_days, val_days)
    windows: dict[str, list[list[str]]] = {"train": [], "val": [], "test": []}
    for s in sessions:
        items, _ = collapse_consecutive(s.item_ids, s.event_times)
        end = s.event_times[-1]
        windows["train" if end < val_start else "val" if end < test_start else "test"].append(items)
    vocab = ItemVocabulary.from_sequences(windows["train"])
    if vocab.n_items == 0:
        raise NotEnoughData(f"no training session ends before the validation start {val_start.isoformat()}")
    train_sequences = [vocab.encode(seq) for seq in windows["train"]]
    held_out: dict[str, list[EvalExample]] = {"val": [], "test": []}
    kept = {"train": len(train_sequences), "val": 0, "test": 0}
    for name in held_out:
        for number, items in enumerate(windows[name]):
            known, _ = collapse_consecutive([i for i in items if i in vocab], [None] * len(items))
            if len(known) < 2:
                continue
            kept[name] += 1
            held_out[name] += [EvalExample(f"{name}-session-{number}", tuple(known[:t][-max_len:]), known[t])
                               for t in range(1, len(known))]
    return SessionSplit(
        train_sequences=train_sequences,
        val_examples=held_out["val"],
        test_examples=held_out["test"],
        vocab=vocab,
        max_len=max_len,
        max_event_time=max_event_time,
        val_start=val_start,
        test_start=test_start,
        test_days=test_days,
        val_days=val_days,
        as_of=None if as_of is None else str(as_of),
        n_users=len({s.user_id for s in sessions}),
        n_events=sum(len(s.item_ids) for s in sessions),
        n_sessions=kept,
        train_item_counts=Counter(i for seq in train_sequences for i in seq),
    )


def resolve_exclude_seen(setting: str | bool, share: float, threshold: float) -> tuple[bool, str]:
    """(exclude seen items?, why) from the setting and the validation window's repeat share."""
    value = str(setting).lower()
    if value in ("true", "1", "yes"):
        return True, f"set explicitly (repeat share {share:.1%})"
    if value in ("false", "0", "no"):
        return False, f"set explicitly (repeat share {share:.1%})"
    if value != "auto":
        raise ValueError(f"exclude_seen must be auto, true or false, not {setting!r}")
    if share >= threshold:
        return False, (f"{share:.1%} of validation next items were already in the input "
                       f"(>= {threshold:.1%}): seen items stay rankable")
    return True, f"{share:.1%} of validation next items were already in the input (< {threshold:.1%})"


def build_split(sessions: Sequence[LogSession], sequences: Sequence[UserSequence], max_len: int,
                plan: EvalPlan, exclude_seen: str | bool = "auto", repeat_threshold: float = 0.05,
                as_of: date | str | None = None) -> Split:
    """The split of ``plan``'s protocol, with the seen-item rule resolved and both recorded."""
    if plan.protocol == "session":
        split: Any = session_split(sessions, max_len, plan.test_days, plan.val_days, as_of=as_of)
    else:
        try:
            split = temporal_split(sequences, max_len, test_days=plan.test_days, val_days=plan.val_days, as_of=as_of)
        except ValueError as exc:
            raise NotEnoughData(str(exc)) from None
    for name, examples in (("validation", split.val_examples), ("test", split.test_examples)):
        if not examples:
            raise NotEnoughData(
                f"the {name} window of the {plan.protocol} protocol has no examples "
                f"(validation from {split.val_start.isoformat()}, test from {split.test_start.isoformat()}); "
                "a longer window (RECSYS_EVAL_TEST_DAYS / RECSYS_EVAL_VAL_DAYS) or more data is needed")
    share = repeat_share(split.val_examples)
    exclude, why = resolve_exclude_seen(exclude_seen, share, repeat_threshold)
    split.protocol = plan.protocol
    split.exclude_seen = exclude
    split.plan = {"protocol_reason": plan.reason, "log_facts": plan.facts,
                  "repeat_share_val": round(share, 4), "exclude_seen_reason": why}
    return split


def load_split(settings: Settings, as_of: date | str | None = None, *, protocol: str | None = None,
               test_days: float | None = None, val_days: float | None = None,
               exclude_seen: str | bool | None = None) -> Split:
    """The night's split from the warehouse: the protocol and windows chosen from the log (or as
    given; ``None`` = the settings), the seen-item rule resolved on its validation window."""
    try:
        sessions = load_sessions(settings, as_of=as_of)
    except FileNotFoundError:
        raise NotEnoughData(f"no warehouse at {settings.warehouse_path}",
                            fix="ingest the log and build the sessions (dbt) first") from None
    if not sessions:
        raise NotEnoughData(f"no events in the warehouse up to {as_of}" if as_of else "the warehouse has no events",
                            fix="pick a date on or after the log's first day, or ingest the log first")
    plan = choose_plan(
        LogFacts.measure(sessions),
        protocol or settings.eval_protocol,
        settings.eval_test_days if test_days is None else test_days,
        settings.eval_val_days if val_days is None else val_days,
    )
    sequences = load_user_sequences(settings, as_of=as_of) if plan.protocol == "user_temporal" else []
    split = build_split(sessions, sequences, settings.max_sequence_length, plan,
                        settings.exclude_seen if exclude_seen is None else exclude_seen,
                        settings.repeat_share_threshold, as_of=as_of)
    split.item_attributes = night_item_attributes(settings, split.vocab)
    return split


def night_item_attributes(settings: Settings, vocab: ItemVocabulary) -> ItemAttributes | None:
    """The lake's item table (the importers' ``--items``) for the night's vocabulary; None when
    no import brought one, or the warehouse predates the item mart."""
    try:
        mapping = load_item_attribute_mapping(settings)
    except LookupError:
        return None
    return ItemAttributes.from_mapping(vocab, mapping) if mapping else None


def split_for_record(settings: Settings, as_of: date | str, recorded: dict[str, Any]) -> Split:
    """The same split a candidate recorded (protocol, windows and seen-item rule as it ran)."""
    return load_split(settings, as_of, protocol=recorded.get("protocol", "user_temporal"),
                      test_days=float(recorded.get("test_days", 1)), val_days=float(recorded.get("val_days", 1)),
                      exclude_seen=bool(recorded.get("exclude_seen", True)))
