"""Plain-PyTorch reference implementations, one module per family. Tests compare the kernels
against them in float64; benchmarks run them (in the input precision) as the PyTorch baseline."""
