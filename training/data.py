"""Warehouse ``user_sequences`` -> item vocabulary + a global temporal train/validation/test split.

The split is global in time (one cut for every user), not leave-last-out per user: a model
evaluated on the last day has never seen anything that happened on or after that day, which is
what serving it tomorrow looks like. With ``T`` the latest event time considered::

    train events      :                     t <  val_start
    validation window : val_start  <= t <  test_start        (val_start  = test_start - val_days,
                                                              moved back over a gap in the log:
                                                              see window_starts)
    test window       : test_start <= t <= T                 (test_start = T - test_days)

* training sequences use only events before ``val_start``; the vocabulary is built from them;
* a validation example is (the user's items before ``val_start`` -> the user's first item in the
  validation window);
* a test example is (the user's items before ``test_start`` -> the user's first item in the
  test window); inputs therefore include the validation window, never the test window.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable, Protocol, Sequence, runtime_checkable

from core.settings import Settings

PADDING_INDEX = 0
# A validation window with fewer events per day than this share of the test window's is a gap
# in the log (see window_starts).
GAP_SHARE = 0.1


@dataclass(frozen=True)
class UserSequence:
    """One user's events in time order, as the warehouse holds them (times naive UTC)."""

    user_id: str
    item_ids: tuple[str, ...]
    event_times: tuple[datetime, ...]


@dataclass(frozen=True)
class EvalExample:
    """One held-out next-item prediction, in raw item ids so any model's vocabulary can encode it.

    ``input_items`` is already de-duplicated and truncated to the last ``max_len`` items; items a
    model's vocabulary lacks are dropped when that model encodes the example.
    """

    user_id: str
    input_items: tuple[str, ...]
    target_item: str


class ItemVocabulary:
    """String item ids <-> indices ``1..N``; ``0`` is padding (and "unknown" for a target)."""

    def __init__(self, item_ids: Sequence[str]):
        self.item_ids: list[str] = list(item_ids)
        self._index = {item: i + 1 for i, item in enumerate(self.item_ids)}
        if len(self._index) != len(self.item_ids):
            raise ValueError("item ids in a vocabulary must be unique")

    @classmethod
    def from_sequences(cls, sequences: Iterable[Sequence[str]]) -> "ItemVocabulary":
        # Sorted, so the same training data always gives the same indices (reproducible runs).
        return cls(sorted({item for seq in sequences for item in seq}))

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def index(self, item_id: str) -> int:
        """Index of ``item_id``; 0 when unknown (a target index 0 can never be ranked: a miss)."""
        return self._index.get(item_id, PADDING_INDEX)

    def item(self, index: int) -> str:
        if index <= 0:
            raise IndexError("index 0 is padding, not an item")
        return self.item_ids[index - 1]

    def encode(self, item_ids: Iterable[str]) -> list[int]:
        """Known items only: an item the model has no embedding for carries no signal."""
        return [self._index[i] for i in item_ids if i in self._index]


@dataclass
class TemporalSplit:
    train_sequences: list[list[int]]  # encoded, de-duplicated, full length (windows cut later)
    val_examples: list[EvalExample]
    test_examples: list[EvalExample]
    vocab: ItemVocabulary
    max_event_time: datetime
    val_start: datetime
    test_start: datetime
    test_days: int
    val_days: int
    max_len: int
    as_of: str | None = None  # events after the end of this day were ignored
    n_users: int = 0
    n_events: int = 0
    train_item_counts: Counter = field(default_factory=Counter)  # vocab index -> interactions
    protocol: str = "user_temporal"
    # Whether the input's items are excluded from rankings (evaluation and serving alike), and
    # why the protocol and this rule were chosen (training.protocol fills both).
    exclude_seen: bool = True
    plan: dict = field(default_factory=dict)
    # The lake's item table aligned with ``vocab`` (training.item_side.ItemAttributes), or None.
    item_attributes: Any = None

    def info(self) -> dict:
        """JSON-friendly description, stored in checkpoints and MLflow runs."""
        return {
            "protocol": self.protocol,
            "as_of": self.as_of,
            "max_event_time": self.max_event_time.isoformat(),
            "val_start": self.val_start.isoformat(),
            "test_start": self.test_start.isoformat(),
            "test_days": self.test_days,
            "val_days": self.val_days,
            "max_sequence_length": self.max_len,
            "n_users": self.n_users,
            "n_events": self.n_events,
            "n_items": self.vocab.n_items,
            "n_train_sequences": len(self.train_sequences),
            "n_train_interactions": sum(len(s) for s in self.train_sequences),
            "n_val_examples": len(self.val_examples),
            "n_test_examples": len(self.test_examples),
            "exclude_seen": self.exclude_seen,
            **self.plan,
        }


def collapse_consecutive(items: Sequence[str], times: Sequence[datetime]) -> tuple[list[str], list[datetime]]:
    """Collapse runs of the same item (view -> click -> add_to_cart of one product) into one step.

    The run keeps its first timestamp: the interaction started then, so a run straddling a split
    boundary belongs to the earlier period, and its repetition on the other side is not a new
    target the model could only "predict" by copying its input. Non-consecutive repeats are kept:
    coming back to an item later is real behaviour (they count as misses under seen-item exclusion).
    """
    out_items: list[str] = []
    out_times: list[datetime] = []
    for item, t in zip(items, times):
        if out_items and out_items[-1] == item:
            continue
        out_items.append(item)
        out_times.append(t)
    return out_items, out_times


def _to_naive_utc(t: datetime) -> datetime:
    return t if t.tzinfo is None else t.astimezone(timezone.utc).replace(tzinfo=None)


def read_warehouse(settings: Settings, sql: str) -> list[tuple]:
    """Rows of a query on the warehouse, opened read-only, with times in UTC."""
    import duckdb

    if not settings.warehouse_path.exists():
        raise FileNotFoundError(f"no warehouse at {settings.warehouse_path}; run the sessions (dbt) stage first")
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        # TIMESTAMPTZ -> TIMESTAMP casts use the session zone; pin it so both column types mean UTC.
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql).fetchall()


def load_user_sequences(settings: Settings, as_of: date | str | None = None) -> list[UserSequence]:
    """Read ``user_sequences`` from the warehouse (read-only), ordered by user id.

    ``as_of``: only events before the end of that UTC day are kept, so re-running a past night
    (a backfill) trains and evaluates on what was known that night, not on later arrivals.
    """
    cutoff = _day_end(as_of) if as_of is not None else None
    rows = read_warehouse(
        settings,
        """
        SELECT CAST(user_id AS VARCHAR),
               list_transform(item_ids, lambda x: CAST(x AS VARCHAR)),
               list_transform(event_times, lambda x: CAST(x AS TIMESTAMP))
        FROM user_sequences
        ORDER BY user_id
        """,
    )
    sequences = []
    for user_id, items, times in rows:
        if not items or times is None or len(items) != len(times):
            raise ValueError(f"user_sequences row for {user_id!r} has mismatched item_ids/event_times")
        # Stable sort: the contract says time order, but equal timestamps keep the listed order.
        pairs = sorted(zip((_to_naive_utc(t) for t in times), items), key=lambda p: p[0])
        if cutoff is not None:
            pairs = [p for p in pairs if p[0] < cutoff]
        if pairs:
            sequences.append(
                UserSequence(user_id, tuple(p[1] for p in pairs), tuple(p[0] for p in pairs))
            )
    return sequences


def _day_end(day: date | str) -> datetime:
    d = date.fromisoformat(day) if isinstance(day, str) else day
    if isinstance(d, datetime):
        d = d.date()
    return datetime.combine(d, time.min) + timedelta(days=1)


def temporal_split(
    sequences: Sequence[UserSequence],
    max_len: int,
    test_days: int = 1,
    val_days: int = 1,
    as_of: date | str | None = None,
) -> TemporalSplit:
    """Global temporal split (see the module docstring); no event at or after a window's start
    ever reaches that window's inputs, the training sequences or the vocabulary."""
    if test_days <= 0 or val_days <= 0:
        raise ValueError("test_days and val_days must be positive")
    if not sequences:
        raise ValueError("no events to split (empty user_sequences, or all after the as_of day)")
    max_event_time, val_start, test_start = window_starts(
        (t for s in sequences for t in s.event_times), test_days, val_days)

    collapsed = [(s.user_id, *collapse_consecutive(s.item_ids, s.event_times)) for s in sequences]

    # Vocabulary from the training period only: the model cannot have embeddings for later items.
    train_raw = [[i for i, t in zip(items, times) if t < val_start] for _, items, times in collapsed]
    vocab = ItemVocabulary.from_sequences(train_raw)
    if vocab.n_items == 0:
        raise ValueError(f"no training events before the validation start {val_start.isoformat()}")
    train_sequences = [vocab.encode(seq) for seq in train_raw if seq]

    val_examples: list[EvalExample] = []
    test_examples: list[EvalExample] = []
    for user_id, items, times in collapsed:
        val = _window_example(user_id, items, times, val_start, test_start, max_len, vocab)
        if val is not None:
            val_examples.append(val)
        test = _window_example(user_id, items, times, test_start, None, max_len, vocab)
        if test is not None:
            test_examples.append(test)

    counts: Counter = Counter(i for seq in train_sequences for i in seq)
    return TemporalSplit(
        train_sequences=train_sequences,
        val_examples=val_examples,
        test_examples=test_examples,
        vocab=vocab,
        max_event_time=max_event_time,
        val_start=val_start,
        test_start=test_start,
        test_days=test_days,
        val_days=val_days,
        max_len=max_len,
        as_of=None if as_of is None else str(as_of),
        n_users=len(sequences),
        n_events=sum(len(s.item_ids) for s in sequences),
        train_item_counts=counts,
    )


def window_starts(event_times: Iterable[datetime], test_days: float, val_days: float
                  ) -> tuple[datetime, datetime, datetime]:
    """(latest event, validation start, test start). The test window is the last ``test_days``
    before the latest event, the validation window the ``val_days`` before it. When that
    validation window holds fewer than ``GAP_SHARE`` of the test window's events per day (days
    without arrivals just before the test window), it ends at the latest event before the test
    window instead, so a gap in the log does not leave validation empty or thin."""
    times = sorted(event_times)
    if not times:
        raise ValueError("no events to split")
    max_event_time = times[-1]
    test_start = max_event_time - timedelta(days=test_days)
    before = bisect_left(times, test_start)
    in_val = before - bisect_left(times, test_start - timedelta(days=val_days))
    test_rate, val_rate = (len(times) - before) / test_days, in_val / val_days
    val_end = test_start
    if before and val_rate < GAP_SHARE * test_rate:
        val_end = times[before - 1] + timedelta(microseconds=1)
    return max_event_time, val_end - timedelta(days=val_days), test_start


def _window_example(
    user_id: str,
    items: Sequence[str],
    times: Sequence[datetime],
    window_start: datetime,
    window_end: datetime | None,
    max_len: int,
    vocab: ItemVocabulary,
) -> EvalExample | None:
    """(items strictly before the window, truncated) -> the first item inside the window."""
    history = [i for i, t in zip(items, times) if t < window_start]
    target = next(
        (i for i, t in zip(items, times) if t >= window_start and (window_end is None or t < window_end)),
        None,
    )
    if target is None:
        return None
    # Raw ids, truncated before any vocabulary is applied: the candidate and a champion trained
    # on another vocabulary must be scored on exactly the same inputs.
    inputs = tuple(history[-max_len:])
    # Cold-start users (no training-period item in the input) are the popularity fallback's job
    # in serving; no sequential model can be measured on them, so they are not examples.
    if not any(i in vocab for i in inputs):
        return None
    # The target is kept even when it never occurred in training (it is not in the vocabulary):
    # no model can rank it, so it counts as a miss for every model instead of silently
    # inflating the metrics by dropping the hard cases.
    return EvalExample(user_id, inputs, target)


def load_split(
    settings: Settings,
    as_of: date | str | None = None,
    test_days: int = 1,
    val_days: int = 1,
) -> TemporalSplit:
    """The warehouse's sequences as of ``as_of`` (whole history when None), split in time."""
    sequences = load_user_sequences(settings, as_of=as_of)
    return temporal_split(
        sequences, settings.max_sequence_length, test_days=test_days, val_days=val_days, as_of=as_of
    )


@runtime_checkable
class Split(Protocol):
    """What the training loop consumes, whatever the protocol that produced it.

    :class:`TemporalSplit` (global time cut, the nightly pipeline) and
    :class:`training.loo.LeaveOneOutSplit` (per-user leave-one-out, the public benchmarks) and
    :class:`training.protocol.SessionSplit` (every prefix of held-out sessions) have these fields; ``train_model(settings, split, ...)`` accepts either.
    """

    train_sequences: list[list[int]]  # vocabulary indices, time order
    val_examples: list[EvalExample]  # raw ids, used for checkpoint selection only
    test_examples: list[EvalExample]  # raw ids, scored once by the selected checkpoint
    vocab: ItemVocabulary
    max_len: int
    train_item_counts: Counter  # vocabulary index -> training interactions
    as_of: str | None
    exclude_seen: bool  # the input's items are not ranked (evaluation and serving alike)
    # Optional: ``item_attributes`` (training.item_side.ItemAttributes or None), read with getattr
    # by the models that use side information.

    def info(self) -> dict: ...
