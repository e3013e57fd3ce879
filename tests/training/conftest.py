"""Tiny warehouses for the training tests, built with SQL like dbt builds the real one.

The synthetic catalog is a ring: every user walks item ``i -> i+1 -> i+2 ...`` (mod N) from a
random start, one step every ~12 hours, with an occasional random jump (noise), sometimes viewing
then clicking the same item (a consecutive duplicate). The next item is mostly a function of the
last one, so a sequential model can learn it, while popularity (about uniform over the ring)
cannot. The data runs to ``DAY2``; splitting "as of" ``DAY1`` gives the previous night.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.warehouse_fixtures import SESSIONIZED_FROM_USER_SEQUENCES

from core.settings import Settings

DAY1 = date(2026, 11, 10)
DAY2 = date(2026, 11, 11)
END = datetime(2026, 11, 11, 23, 0, 0)  # the last event of the generated data (on DAY2)


def item_name(i: int) -> str:
    return f"item_{i:03d}"


def write_user_sequences(path: Path, rows: list[tuple[str, list[str], list[datetime]]]) -> None:
    """(Re)create ``user_sequences`` with the contract's columns in the DuckDB file at ``path``."""
    # Imported here so that the GPU tests can run where only torch is installed.
    import duckdb

    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(path)) as con:
        con.execute("DROP TABLE IF EXISTS user_sequences")
        con.execute(
            """
            CREATE TABLE user_sequences (
                user_id VARCHAR, item_ids VARCHAR[], event_times TIMESTAMP[], n_events BIGINT,
                first_event_time TIMESTAMP, last_event_time TIMESTAMP
            )
            """
        )
        con.executemany(
            "INSERT INTO user_sequences VALUES (?, ?, ?, len(?), list_min(?), list_max(?))",
            [(u, items, times, items, times, times) for u, items, times in rows],
        )
        con.execute(SESSIONIZED_FROM_USER_SEQUENCES)


def ring_rows(
    n_users: int = 160,
    n_items: int = 40,
    seed: int = 0,
    end: datetime = END,
    step_hours: float = 12.0,
    jump_probability: float = 0.15,
) -> list[tuple[str, list[str], list[datetime]]]:
    rng = random.Random(seed)
    rows = []
    for u in range(n_users):
        current = rng.randrange(n_items)
        length = rng.randint(8, 16)
        last = end - timedelta(hours=rng.uniform(0, 30))
        times = [last - timedelta(hours=step_hours * (length - 1 - k) + rng.uniform(0, 2)) for k in range(length)]
        items, out_times = [], []
        for k, t in enumerate(times):
            if k:
                jump = rng.random() < jump_probability
                current = rng.randrange(n_items) if jump else (current + 1) % n_items
            item = item_name(current)
            items.append(item)
            out_times.append(t)
            if rng.random() < 0.3:  # view then click: a consecutive duplicate one minute later
                items.append(item)
                out_times.append(t + timedelta(minutes=1))
        rows.append((f"user_{u:04d}", items, out_times))
    return rows


@pytest.fixture
def synth() -> SimpleNamespace:
    """The generators and their dates, for tests that build their own warehouse."""
    return SimpleNamespace(
        write=write_user_sequences, ring_rows=ring_rows, item=item_name, END=END, DAY1=DAY1, DAY2=DAY2
    )


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The repo-wide fixture (a home under tmp_path), with short sequences and a fixed seed; the
    # synthetic worlds are small, so the evidence floor is lowered to fit them.
    return settings.replace(max_sequence_length=20, seed=7, min_eval_examples=20)


@pytest.fixture
def ring_warehouse(settings: Settings) -> Settings:
    write_user_sequences(settings.warehouse_path, ring_rows())
    return settings


@pytest.fixture
def tiny_sasrec() -> dict:
    """A model small enough for 2 CPU cores, big enough for the ring."""
    return {"d_model": 32, "n_heads": 2, "n_layers": 1, "dropout": 0.1}


def write_amazon(path: Path, n_users: int = 60, n_items: int = 30, seed: int = 0) -> Path:
    """``user item item ...`` lines: users walk a ring of items (learnable next item)."""
    rng = random.Random(seed)
    lines = []
    for u in range(1, n_users + 1):
        current = rng.randint(1, n_items)
        items = []
        for _ in range(rng.randint(5, 12)):
            items.append(current)
            current = current % n_items + 1 if rng.random() < 0.85 else rng.randint(1, n_items)
        lines.append(f"{u} " + " ".join(map(str, items)))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def amazon_file():
    """Writes a small Amazon-format file (see ``write_amazon``) wherever a test asks."""
    return write_amazon
