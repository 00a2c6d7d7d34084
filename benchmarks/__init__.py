"""The genisss benchmark suite: `python -m benchmarks.run [--quick]` (docs/performance.md)."""
