"""Benchmark cases, one module per family (bench_<family>.py); installed as feedbackkit.benchmarks."""
