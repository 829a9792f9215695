"""Model benchmarks on the public Amazon Games sequences: ``reproduce`` (accuracy against the published
figures), ``bench_models`` (epoch time, also the GPU benchmark) and ``paper_benchmark`` (what both share)."""
