"""How many threads a CPU pass runs on, and how its work is split.

The rule, for one pass over ``work`` entries spread over ``rows`` rows (a
dense pass: ``n * m`` entries over ``n`` rows; a sparse product: the stored
entries):

* it is cut into ``blocks(work, rows) = max(1, min(rows, usable_cores(),
  work // MIN_ENTRIES_PER_THREAD))`` blocks of rows (the size is
  ``_blocks.MIN_ENTRIES_PER_THREAD``), each with its own partial sums,
  added in block order after the pass;
* the blocks run on ``min(blocks, numba.get_num_threads(), free_cores())``
  threads, ``free_cores()`` being the usable cores that other processes'
  runnable threads leave free right now (:func:`free_cores`).

So every thread gets at least ``MIN_ENTRIES_PER_THREAD`` entries (a small
problem runs on the calling thread alone and never wakes another one), no
pass runs more threads than the cores this process may use (its CPU affinity
and its cgroup CPU quota, e.g. a container's ``--cpus``), and
``NUMBA_NUM_THREADS``, ``solve(..., n_threads=k)`` and a Dask worker's one
thread (``distributed.cluster.WORKER_ENV``) cap the threads without changing
the blocks: the answer is bitwise the same whatever the number of threads.

Idle threads spin briefly, then sleep. GNU OpenMP (Numba's ``omp`` layer)
spins a worker for 300000 rounds after each parallel loop (milliseconds of a
core): when the main thread then works alone for a while (SNS between its
dense passes) or the machine is shared, those cores were another job's, and
solves took several times as long. Sleeping at once (``OMP_WAIT_POLICY=
PASSIVE``) costs a wake-up per loop instead, which made Sinkhorn solves much
slower on an idle machine. So when this module is imported, Numba's
threading layer is started with a short spin, ``GOMP_SPINCOUNT=SPIN_COUNT``
(long enough to bridge the gap between the passes of one iteration) and
``KMP_BLOCKTIME=1`` (ms, for Intel/LLVM OpenMP), unless the environment
already sets a wait policy (``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``,
``KMP_BLOCKTIME``: the user's choice is kept); the figures are in
benchmarks/RESULTS.md, sections 12 and 15. The variables are removed again
once the runtime has read them, so child processes and other libraries do
not see them. An OpenMP runtime loaded before (by Numba code of the user's,
say) keeps its own policy.
"""

import contextlib
import math
import os
import time
from functools import cache

import numba

from . import _blocks

#: Variables that set an OpenMP runtime's wait policy (any, GNU, Intel/LLVM).
WAIT_POLICY_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
#: GNU OpenMP's spin rounds before an idle thread sleeps (its default: 300000).
#: Measured (RESULTS section 12): 30000 as fast as the default on an idle
#: machine, and as robust as no spinning when shared.
SPIN_COUNT = 30000
#: What we set when the environment sets no wait policy.
SHORT_SPIN = {"GOMP_SPINCOUNT": str(SPIN_COUNT), "KMP_BLOCKTIME": "1"}


def _start_threading_layer():
    """Start Numba's threading layer with a short spin (see the module docstring)."""
    ours = {} if any(name in os.environ for name in WAIT_POLICY_VARIABLES) else SHORT_SPIN
    os.environ.update(ours)
    try:
        numba.get_num_threads()  # loads the layer: its OpenMP runtime reads the variables now
    finally:
        for name in ours:
            del os.environ[name]


_start_threading_layer()


@cache
def cgroup_cpu_limit(root="/sys/fs/cgroup"):
    """The CPU quota of this process's cgroup in cores (rounded up), or ``None``.

    Reads cgroup v2's ``cpu.max`` or else v1's ``cpu/cpu.cfs_quota_us`` and
    ``cpu/cpu.cfs_period_us`` under ``root``, where a container sees its own
    cgroup; ``None`` when there is no quota (``max``, ``-1``) or no such file.
    Read once per process.
    """
    try:
        with open(os.path.join(root, "cpu.max")) as fh:
            quota, period = (fh.read().split() + ["", ""])[:2]
    except OSError:
        try:
            with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as fq, \
                 open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as fp:
                quota, period = fq.read().strip(), fp.read().strip()
        except OSError:
            return None
    try:
        quota, period = int(quota), int(period)
    except ValueError:  # "max": no quota
        return None
    return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None


@cache
def usable_cores():
    """Cores this process may run on: its CPU affinity, capped by its cgroup quota.

    Read once per process (a child inherits both); a pass asks for it every time.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return min(cores, limit) if limit else cores


def blocks(work, rows):
    """Blocks of rows a pass of ``work`` entries over ``rows`` rows is cut into.

    Depends on the problem and the cores, never on the thread count, so
    partial sums are added in the same order however many threads run them.
    """
    return max(1, min(int(rows), usable_cores(), int(work) // _blocks.MIN_ENTRIES_PER_THREAD))


def threads(nblocks):
    """Threads that run ``nblocks`` blocks: at most one per block, within Numba's
    count, and no more than the cores other work leaves free (:func:`free_cores`)."""
    want = min(int(nblocks), numba.get_num_threads())
    return want if want <= 1 else min(want, free_cores())


#: Seconds between two looks at how busy the machine is (:func:`free_cores`).
LOAD_SAMPLE_SECONDS = 0.02
_load_sample = [-math.inf, 1]  # (when, free cores then)


def free_cores():
    """Usable cores not taken by other runnable threads right now (at least 1).

    Fork-join passes on more threads than there are idle cores wait, at
    every pass, for a thread the kernel has descheduled in favour of another
    process: two solves at once, or one beside a busy core, took several
    times their time alone (benchmarks/RESULTS.md, section 15). So the
    threads of a pass are capped at the cores left free by the threads the
    kernel reports runnable (``procs_running`` of ``/proc/stat``) other than
    this process's own, looked at every :data:`LOAD_SAMPLE_SECONDS` at most
    (a look reads a few small ``/proc`` files). Without ``/proc`` (not
    Linux), every usable core.
    """
    now = time.monotonic()
    if now - _load_sample[0] >= LOAD_SAMPLE_SECONDS:
        _load_sample[:] = now, max(1, usable_cores() - runnable_elsewhere())
    return _load_sample[1]


def runnable_elsewhere():
    """Runnable threads of other processes now: the kernel's count of runnable
    threads minus this process's running ones (0 where ``/proc`` is missing)."""
    try:
        with open("/proc/stat", "rb") as fh:
            running = int(fh.read().split(b"procs_running ", 1)[1].split(maxsplit=1)[0])
        ours = 0
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/stat", "rb") as fh:
                stat = fh.read()
            ours += stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] == b"R"
    except (OSError, ValueError, IndexError):
        return 0
    return max(0, running - ours)


def run(kernel, nblocks, *args):
    """``kernel(*args)`` with its parallel loops on :func:`threads` ``(nblocks)`` threads.

    One query of Numba's count per call (cheap); it is set, and restored, only
    when fewer threads than it are to run.
    """
    current = numba.get_num_threads()
    use = threads(nblocks)
    if use >= current:
        return kernel(*args)
    numba.set_num_threads(int(use))
    try:
        return kernel(*args)
    finally:
        numba.set_num_threads(current)


@contextlib.contextmanager
def at_most(n_threads):
    """Cap the threads of the passes inside the block at ``n_threads`` (``None``: no cap).

    ``solve``'s ``n_threads``: Numba's thread count of the calling thread is set
    to ``min(n_threads, NUMBA_NUM_THREADS)`` and restored on exit; each pass then
    takes the fewer of that and its :func:`blocks`.
    """
    if n_threads is None:
        yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(min(int(n_threads), numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


@contextlib.contextmanager
def blas_products():
    """NumPy's matrix products (and SciPy's LAPACK calls) inside the block on
    at most :func:`free_cores` threads (and the caller's ``n_threads`` cap:
    Numba's current count).

    BLAS (OpenBLAS) runs its own threads, which spin-wait for each other: on
    a core shared with another process a product on both threads takes
    several times its time on one (a shared-cost barycenter: 13.8 s on 2
    threads against 2.3 s on 1, load average 3.4). The cap is set only when
    it lowers BLAS's count, and restored on exit; without ``threadpoolctl``
    installed, nothing is capped.
    """
    controller = _blas_controller()
    limit = min(free_cores(), numba.get_num_threads())
    if controller is None or limit >= _BLAS_THREADS[0]:
        yield
        return
    with controller.limit(limits=limit, user_api="blas"):
        yield


_BLAS_THREADS = [0]  # BLAS's own thread count, once known


@cache
def _blas_controller():
    """threadpoolctl's controller of the BLAS libraries loaded (NumPy's), or None."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    controller = ThreadpoolController().select(user_api="blas")
    _BLAS_THREADS[0] = max((info["num_threads"] for info in controller.info()), default=0)
    return controller if _BLAS_THREADS[0] > 1 else None
