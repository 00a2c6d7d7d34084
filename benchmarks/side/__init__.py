"""Side measurements quoted in docs/performance.md: run by hand, not by the suite."""
