"""Where the training loop runs: the torch device, and torch's CPU threads sized to the usable cores.

:func:`prepare_device` is the loop's one call: on CUDA it selects the process's GPU, on CPU it
applies the thread rule of :func:`use_usable_cores`.
"""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger(__name__)

# torch's intra-op thread count when this module was imported, and the count training last set:
# any other count at the start of training was chosen by the caller (torch.set_num_threads).
_IMPORTED_TORCH_THREADS = torch.get_num_threads()
_threads_set_by_training: int | None = None


def resolve_device(setting: str = "auto", local_rank: int = 0) -> torch.device:
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {setting!r} requested but CUDA is not available")
    if setting == "cuda":
        # Always with an index: torch.cuda.set_device refuses a bare "cuda", and each DDP process
        # takes the GPU of its local rank (0 in a single process).
        return torch.device("cuda", local_rank)
    return torch.device(setting)


def prepare_device(setting: str, local_rank: int = 0) -> torch.device:
    """:func:`resolve_device`, then make it this process's device (CUDA) or size the threads (CPU)."""
    device = resolve_device(setting, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        use_usable_cores()  # one intra-op thread per usable core, unless the caller chose a count
    return device


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask: taskset, cpusets, a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


def use_usable_cores() -> int | None:
    """Set torch's intra-op threads to :func:`usable_cores` for CPU training; the count set, or None.

    torch sizes its pool from the machine's cores, which oversubscribes a process pinned to
    fewer (a container's cpuset, ``taskset``) and slows every step. The rule: training on CPU
    uses one intra-op thread per usable core (shared out among the ``LOCAL_WORLD_SIZE`` DDP
    processes of the machine), unless the caller chose a count itself, that is
    ``OMP_NUM_THREADS`` is set in the environment (``torchrun`` sets it to 1 per process), or
    ``torch.set_num_threads`` was called after this module was imported; those are left alone.
    """
    global _threads_set_by_training
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return None
    current = torch.get_num_threads()
    if current not in (_IMPORTED_TORCH_THREADS, _threads_set_by_training):
        return None
    try:
        ranks_here = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        ranks_here = 1
    cores = max(1, usable_cores() // ranks_here)
    if cores != current:
        torch.set_num_threads(cores)
        log.info("torch intra-op threads: %d (usable cores; was %d)", cores, current)
    _threads_set_by_training = cores
    return cores
