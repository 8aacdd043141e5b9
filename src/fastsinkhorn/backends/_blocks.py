"""Block sizes of the blocked passes over (n, m) arrays: what each is for, and why its size.

The one owner of these sizes. A pass over rows takes ``max(1, SIZE // m)``
rows at a time, about ``SIZE`` entries. Users read them as ``_blocks.NAME``
when they run (not ``from _blocks import NAME``), so a test can shrink a
block with ``monkeypatch.setattr(_blocks, NAME, ...)``.

The four sizes are separate concepts, tuned for different limits (a cache, a
device, a thread's start-up), even where two have the same value.
"""

#: Entries per block of rows of the geometries' passes written with the array
#: library (NumPy or CuPy): ``BlockedGeometry.row_blocks``, over which plan
#: rows, summaries and a ``LazyPlan``'s reductions run. 2 MiB per float64
#: temporary: a pass over an n x m plan never holds it whole, and a block is
#: large enough that the few library calls per block cost nothing beside it.
ARRAY_BLOCK_ENTRIES = 1 << 18

#: Entries per float64 scratch block of the CPU backend's exp passes
#: (``_cpu._row_blocks``: ``plan``, the SNS dense pass, the point-cloud
#: log-sum-exp): 512 KiB, so that a block written by a kernel (the exponents)
#: is still in the core's L2 cache when NumPy's SIMD ``exp`` and the next
#: kernel read it.
CPU_EXP_BLOCK_ENTRIES = 1 << 16

#: float64 entries per block of the GPU backend's cost statistics
#: (``_gpu._reduced_blocks``: CuPy reductions, once per solve): 32 MiB
#: temporaries, large enough that each CuPy launch fills the device, small
#: beside its memory.
GPU_STAT_BLOCK_ENTRIES = 1 << 22

#: Fewest entries of a CPU pass that each thread gets (``_threads.blocks``):
#: 512 KiB of float64, enough streaming to pay for waking a thread; below
#: ``2 * MIN_ENTRIES_PER_THREAD`` a pass runs on the calling thread.
MIN_ENTRIES_PER_THREAD = 1 << 16
