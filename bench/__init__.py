"""leanvec-bench: ann-benchmarks-style runs of leanvec and its peers.

``leanvec-bench run`` builds every index in a definitions file on one dataset,
times its query sweep and writes one result file per point in the ann-benchmarks
layout; ``plot`` and ``table`` read those files back. See :mod:`bench.cli`.
"""
