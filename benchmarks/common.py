"""What every benchmark shares: where it works, what machine it ran on, how its figures are
recorded (``benchmarks/results/<name>.json``) and shown (a section of ``docs/benchmarks.md``),
and the peak memory of a whole process tree.

A results file is a JSON list of records, one figure each::

    {"metric", "value", "unit", "dataset", "model", "baseline", "command", "hardware", "date"}

``metric`` names the figure (``throughput``, ``wall_time``, ``peak_rss``, ...), ``dataset`` what
it was measured on, ``model`` the system measured, ``baseline`` what it is compared with (null when
nothing), ``command`` the exact command line that produced it, ``hardware`` the machine
(:func:`hardware`) and ``date`` when (ISO 8601, UTC).
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
DOCS_PATH = REPO_ROOT / "docs" / "benchmarks.md"
RECORD_KEYS = ("metric", "value", "unit", "dataset", "model", "baseline", "command", "hardware", "date")
MIB = 1024 * 1024

DOCS_HEADER = """# Benchmarks

Benchmarks are commands, not timed tests: each one prints a table, writes every figure to
`benchmarks/results/<name>.json` (a list of records `{"metric", "value", "unit", "dataset",
"model", "baseline", "command", "hardware", "date"}`) and rewrites its own section below. The
sections are generated; edit the text outside the `<!-- BEGIN/END benchmark -->` markers only.
"""


# ---- where a benchmark works ----


def default_work_dir(name: str, env: Mapping[str, str] | None = None) -> Path:
    """``$RECSYS_HOME/bench/<name>``, or ``<tmp>/recsys-bench/<name>``; never inside the repo.

    Generated inputs are large (a 10M-event log is ~1.6 GB of gzip) and outputs larger, so a
    ``RECSYS_HOME`` inside the checkout (the default ``.recsys``) falls back to the temp folder.
    """
    env = os.environ if env is None else env
    home = env.get("RECSYS_HOME")
    if home:
        resolved = Path(home).resolve()
        if not resolved.is_relative_to(REPO_ROOT):
            return resolved / "bench" / name
    return Path(tempfile.gettempdir()) / "recsys-bench" / name


# ---- what the machine is ----


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return f"{line.split('=', 1)[1].strip().strip(chr(34))}, kernel {platform.release()}"
    except OSError:
        pass
    return platform.platform()


def _java_version() -> str | None:
    try:
        done = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "([^"]+)"', done.stderr + done.stdout)
    return match.group(1) if match else None


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - an absent package is just not reported
        return None


def git_revision() -> str | None:
    """The checkout's commit, with ``+dirty`` when tracked files differ from it, the
    benchmarks' own outputs (``benchmarks/results/``, ``docs/benchmarks.md``) aside: a second
    benchmark run before those are committed measures the same code.

    ``RECSYS_CODE_REVISION`` overrides it, for a copy of the tree whose ``.git`` is not the
    commit it holds (a tree shipped to another machine to run there)."""
    if os.environ.get("RECSYS_CODE_REVISION"):
        return os.environ["RECSYS_CODE_REVISION"]
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=30)
        if head.returncode != 0:
            return None
        outputs = [f":(exclude){path.relative_to(REPO_ROOT)}" for path in (RESULTS_DIR, DOCS_PATH)]
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *outputs],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")


def hardware(spark_master: str | None = None, packages: Iterable[str] = ()) -> dict[str, Any]:
    """The machine a figure was measured on (and the software that matters for it)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    described: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "logical_cores": psutil.cpu_count(logical=True),
        "usable_cores": usable,
        "ram_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "os": _os_name(),
        "python": platform.python_version(),
    }
    revision = git_revision()
    if revision:
        described["code_revision"] = revision
    if spark_master is not None:
        described["spark_master"] = spark_master
        described["java"] = _java_version()
    for package in packages:
        described[package] = _version(package)
    return described


def hardware_summary(described: Mapping[str, Any]) -> str:
    """One line for a table caption: ``AMD EPYC, 2 cores, 23.4 GiB RAM, Debian ...``."""
    parts = [
        str(described.get("cpu_model")),
        f"{described.get('usable_cores')} cores",
        f"{described.get('ram_gib')} GiB RAM",
        str(described.get("os")),
        f"Python {described.get('python')}",
    ]
    if described.get("java"):
        parts.append(f"Java {described['java']}")
    if described.get("spark_master"):
        parts.append(f"Spark master `{described['spark_master']}`")
    skip = {"cpu_model", "logical_cores", "usable_cores", "ram_gib", "os", "python", "java", "spark_master",
            "code_revision"}
    parts += [f"{key} {value}" for key, value in described.items() if key not in skip and value]
    if described.get("code_revision"):
        parts.append(f"code at {described['code_revision']}")
    return ", ".join(parts)


# ---- how figures are recorded ----


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def command_line(module: str, argv: Sequence[str]) -> str:
    """The command as a user would type it: ``python -m <module> <args>``."""
    return " ".join(["python", "-m", module, *(shlex.quote(arg) for arg in argv)])


def record(
    metric: str,
    value: float | int | None,
    unit: str,
    *,
    dataset: str,
    model: str,
    baseline: str | None,
    command: str,
    hardware: Mapping[str, Any],
    date: str,
) -> dict[str, Any]:
    if isinstance(value, float):
        # JSON has no NaN/inf; a millisecond or a thousandth is as precise as any figure here is.
        value = round(value, 3) if math.isfinite(value) else None
    return {
        "metric": metric,
        "value": value,
        "unit": unit,
        "dataset": dataset,
        "model": model,
        "baseline": baseline,
        "command": command,
        "hardware": dict(hardware),
        "date": date,
    }


def read_results(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    records = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(records, list):
        raise ValueError(f"{path}: a results file holds a JSON list of records")
    return records


def update_results(path: Path, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Write ``records`` to ``path``, replacing the earlier records of the same datasets.

    Records of datasets this run did not measure stay, so a run of one size does not erase the
    figures of another. Returns the whole list as written.
    """
    for item in records:
        missing = [key for key in RECORD_KEYS if key not in item]
        if missing:
            raise ValueError(f"record {item!r} lacks {missing}")
    renewed = {item["dataset"] for item in records}
    kept = [item for item in read_results(path) if item.get("dataset") not in renewed]
    merged = kept + [dict(item) for item in records]
    _write_atomically(Path(path), json.dumps(merged, indent=2) + "\n")
    return merged


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


# ---- how figures are shown ----


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- BEGIN benchmark: {name} -->", f"<!-- END benchmark: {name} -->"


def replace_section(path: Path, name: str, title: str, body: str) -> None:
    """Replace the generated section ``name`` of a markdown file, leaving the rest as it is.

    The section is ``## <title>`` followed by ``body`` between two HTML-comment markers; the
    title and the markers are added at the end when the file (or the section) is new, and only
    the text between the markers is replaced afterwards.
    """
    path = Path(path)
    begin, end = _markers(name)
    text = path.read_text(encoding="utf-8") if path.exists() else DOCS_HEADER
    block = f"{begin}\n{body.strip()}\n{end}"
    start, stop = text.find(begin), text.find(end)
    if start >= 0 and stop > start:
        text = text[:start] + block + text[stop + len(end):]
    elif start >= 0 or stop >= 0:
        raise ValueError(f"{path}: unbalanced markers of section {name!r}")
    else:
        text = text.rstrip("\n") + f"\n\n## {title}\n\n{block}\n"
    _write_atomically(path, text if text.endswith("\n") else text + "\n")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub markdown table; ``align`` is one letter per column (``l`` or ``r``)."""
    align = align or "l" * len(headers)
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join("" if cell is None else str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A fixed-width table for the terminal."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    out = ["  ".join(cell.rjust(widths[i]) if i else cell.ljust(widths[i]) for i, cell in enumerate(row))
           for row in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# ---- peak memory of a process tree ----


def tree_rss(root: psutil.Process) -> int:
    """Resident memory of ``root`` and all its descendants, in bytes (shared pages counted in
    every process that maps them, so an upper bound of what the tree needs)."""
    total = 0
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            pass  # ended between listing and reading
    return total


class PeakRssSampler:
    """Samples the RSS of a process tree in a background thread and keeps the peak."""

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        self._root = psutil.Process(pid)
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)
        self.peak_bytes = 0
        self.samples = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, tree_rss(self._root))
            self.samples += 1
            self._stop.wait(self._interval)

    def __enter__(self) -> "PeakRssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class Measured:
    returncode: int
    wall_s: float
    peak_rss_bytes: int

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss_bytes / MIB


def run_measured(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    log_path: Path | None = None,
    interval_s: float = 0.1,
) -> Measured:
    """Run ``command`` in a fresh process; its wall time and the peak RSS of its process tree.

    stdout and stderr go to ``log_path`` (or are discarded), so a chatty JVM cannot block on a
    full pipe.
    """
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        started = time.perf_counter()
        child = subprocess.Popen(list(command), env=dict(env) if env is not None else None,
                                 cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        with PeakRssSampler(child.pid, interval_s) as sampler:
            returncode = child.wait()
        wall = time.perf_counter() - started
    finally:
        if log_path:
            log.close()  # type: ignore[union-attr]
    return Measured(returncode=returncode, wall_s=wall, peak_rss_bytes=sampler.peak_bytes)


def python_module_command(module: str, *args: str) -> list[str]:
    """``[sys.executable, -m, module, *args]``: a worker in the same interpreter and venv."""
    return [sys.executable, "-m", module, *args]
