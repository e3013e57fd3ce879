"""What every benchmark shares: work dir, machine description, records and results files
(``benchmarks/results/<name>.json``, a JSON list of :data:`RECORD_KEYS` records, one figure each),
percentiles, loopback ports, a private Redis and the peak RSS of a process tree.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
DOCS_PATH = REPO_ROOT / "docs" / "benchmarks.md"
RECORD_KEYS = ("metric", "value", "unit", "dataset", "model", "baseline", "command", "hardware", "date")
MIB = 1024 * 1024


def default_work_dir(name: str, env: Mapping[str, str] | None = None) -> Path:
    """``$RECSYS_HOME/bench/<name>``, or ``<tmp>/recsys-bench/<name>`` when that home is inside the
    repo (generated inputs are large)."""
    env = os.environ if env is None else env
    home = env.get("RECSYS_HOME")
    if home:
        resolved = Path(home).resolve()
        if not resolved.is_relative_to(REPO_ROOT):
            return resolved / "bench" / name
    return Path(tempfile.gettempdir()) / "recsys-bench" / name


def _grep(path: str, pattern: str) -> str | None:
    """The first group of ``pattern`` in the file at ``path`` (None when absent or unreadable)."""
    try:
        match = re.search(pattern, Path(path).read_text(), re.MULTILINE)
    except OSError:
        return None
    return match.group(1).strip() if match else None


def _java_version() -> str | None:
    try:
        done = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "([^"]+)"', done.stderr + done.stdout)
    return match.group(1) if match else None


def _version(module: str) -> str | None:
    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:  # an absent package is just not reported
        return None


def git_revision() -> str | None:
    """The checkout's commit, ``+dirty`` when tracked files other than the benchmarks' own outputs
    differ (a second run before those are committed measures the same code)."""
    from core.revision import git_revision as revision
    from core.settings import Settings

    return revision(Settings.from_env().code_revision, root=REPO_ROOT, ignore=(RESULTS_DIR, DOCS_PATH))


def hardware(spark_master: str | None = None, packages: Iterable[str] = ()) -> dict[str, Any]:
    """The machine a figure was measured on (and the software that matters for it)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    os_name = _grep("/etc/os-release", r'^PRETTY_NAME="?([^"\n]*)')
    described: dict[str, Any] = {
        "cpu_model": _grep("/proc/cpuinfo", r"^model name\s*:(.*)$") or platform.processor() or platform.machine(),
        "logical_cores": psutil.cpu_count(logical=True),
        "usable_cores": usable,
        "ram_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "os": f"{os_name}, kernel {platform.release()}" if os_name else platform.platform(),
        "python": platform.python_version(),
    }
    if revision := git_revision():
        described["code_revision"] = revision
    if spark_master is not None:
        described.update(spark_master=spark_master, java=_java_version())
    return described | {package: _version(package) for package in packages}


def hardware_summary(described: Mapping[str, Any]) -> str:
    """One line for a table caption: ``AMD EPYC, 2 cores, 23.4 GiB RAM, Debian ...``."""
    parts = [str(described.get("cpu_model")), f"{described.get('usable_cores')} cores",
             f"{described.get('ram_gib')} GiB RAM", str(described.get("os")), f"Python {described.get('python')}"]
    parts += [f"Java {described['java']}"] if described.get("java") else []
    parts += [f"Spark master `{described['spark_master']}`"] if described.get("spark_master") else []
    skip = {"cpu_model", "logical_cores", "usable_cores", "ram_gib", "os", "python", "java", "spark_master",
            "code_revision"}
    parts += [f"{key} {value}" for key, value in described.items() if key not in skip and value]
    parts += [f"code at {described['code_revision']}"] if described.get("code_revision") else []
    return ", ".join(parts)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def command_line(module: str, argv: Sequence[str]) -> str:
    """The command as a user would type it: ``python -m <module> <args>``."""
    return " ".join(["python", "-m", module, *(shlex.quote(arg) for arg in argv)])


def record(metric: str, value: float | int | None, unit: str, *, dataset: str, model: str, baseline: str | None,
           command: str, hardware: Mapping[str, Any], date: str) -> dict[str, Any]:
    if isinstance(value, float):  # JSON has no NaN/inf; a thousandth above 1, four significant digits below
        value = None if not math.isfinite(value) else round(value, 3) if abs(value) >= 1 else float(f"{value:.4g}")
    return {"metric": metric, "value": value, "unit": unit, "dataset": dataset, "model": model,
            "baseline": baseline, "command": command, "hardware": dict(hardware), "date": date}


def read_results(path: Path) -> list[dict[str, Any]]:
    if not Path(path).exists():
        return []
    records = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(records, list):
        raise ValueError(f"{path}: a results file holds a JSON list of records")
    return records


def update_results(path: Path, records: Sequence[Mapping[str, Any]],
                   key: Sequence[str] = ("dataset",)) -> list[dict[str, Any]]:
    """Write ``records`` to ``path``, replacing the earlier records with the same ``key`` values
    (others stay: a run of one size does not erase another's figures). Returns the whole list."""
    for item in records:
        missing = [name for name in RECORD_KEYS if name not in item]
        if missing:
            raise ValueError(f"record {item!r} lacks {missing}")
    renewed = {tuple(item[k] for k in key) for item in records}
    merged = [item for item in read_results(path) if tuple(item.get(k) for k in key) not in renewed]
    merged += [dict(item) for item in records]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return merged


def finish(name: str, path: Path, records: Sequence[Mapping[str, Any]], key: Sequence[str] = ("dataset",)) -> int:
    """A benchmark's last step: merge ``records`` into ``path`` and print its section's tables."""
    from benchmarks.report_docs import print_section

    merged = update_results(path, records, key)
    print_section(name, records)
    print(f"{len(records)} records -> {path} ({len(merged)} in all)")
    return 0


def by_key(records: Iterable[Mapping[str, Any]], *key: str) -> dict[tuple, dict[str, Any]]:
    """``{(record[k] for k in key): {metric: value}}`` in first-appearance order, later records winning."""
    out: dict[tuple, dict[str, Any]] = {}
    for r in records:
        out.setdefault(tuple(r[k] for k in key), {})[r["metric"]] = r["value"]
    return out


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


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (NaN for no values)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout_s: float = 30.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {host}:{port}")


def stop_process(process: subprocess.Popen, timeout_s: float = 20.0) -> None:
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_private_redis(workdir: Path) -> tuple[subprocess.Popen, int]:
    """A ``redis-server`` of this benchmark's own on a free port (never the machine's shared one)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(workdir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return process, port


def tree_rss(root: psutil.Process) -> int:
    """RSS of ``root`` and its descendants in bytes (shared pages counted in each: an upper bound)."""
    total = 0
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for process in processes:
        with contextlib.suppress(psutil.Error):  # ended between listing and reading
            total += process.memory_info().rss
    return total


class PeakRssSampler:
    """Samples the RSS of a process tree in a background thread and keeps the peak."""

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        self._root = psutil.Process(pid)
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)
        self.peak_bytes = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, tree_rss(self._root))
            self._stop.wait(self._interval)

    def __enter__(self) -> "PeakRssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Measured(NamedTuple):
    returncode: int
    wall_s: float
    peak_rss_bytes: int


def run_measured(command: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
                 log_path: Path | None = None, interval_s: float = 0.1) -> Measured:
    """Run ``command`` in a fresh process; its wall time and the peak RSS of its process tree.
    Output goes to ``log_path`` (or nowhere), so a chatty JVM cannot block on a full pipe."""
    with open(log_path, "wb") if log_path else contextlib.nullcontext(subprocess.DEVNULL) as log:
        started = time.perf_counter()
        child = subprocess.Popen(list(command), env=dict(env) if env is not None else None,
                                 cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        with PeakRssSampler(child.pid, interval_s) as sampler:
            returncode = child.wait()
        wall = time.perf_counter() - started
    return Measured(returncode=returncode, wall_s=wall, peak_rss_bytes=sampler.peak_bytes)
