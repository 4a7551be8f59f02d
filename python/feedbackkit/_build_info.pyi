"""Type stub of the module CMake generates from cmake/_build_info.py.in."""

CUDA_BUILT: bool
CUDA_VERSION: str
CUDA_ARCHS: str
CXX_COMPILER: str
