"""The native modules: build info, shared host-device math, and the CUDA module importing
without a GPU driver."""

from __future__ import annotations

import importlib
import math
import shutil

import pytest

from feedbackkit import _build_info, _native


def test_cpu_module_has_openmp():
    assert _native.cpu().omp_max_threads() >= 1


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed: CUDA module not expected")
def test_cuda_module_compiled_when_nvcc_present():
    assert _build_info.CUDA_BUILT and _native.cuda_built()
    assert _build_info.CUDA_ARCHS.split(",") == ["80-real", "90-real", "90-virtual"]


@pytest.mark.skipif(not _build_info.CUDA_BUILT, reason="built without CUDA")
def test_cuda_module_imports_without_gpu_and_reports_build():
    module = importlib.import_module("feedbackkit._cuda")
    info = module.build_info()
    assert info["archs"] == _build_info.CUDA_ARCHS
    assert info["cuda_runtime_version"] // 1000 == int(_build_info.CUDA_VERSION.split(".")[0])
    assert module.device_count() == _native.gpu_count()


def test_cuda_unusable_without_gpu_has_clear_error():
    if _native.cuda_built() and _native.gpu_count() > 0:
        pytest.skip("a GPU is present")
    _native.cuda.cache_clear()
    with pytest.raises(RuntimeError, match=r"GPU|without CUDA"):
        _native.cuda()


@pytest.mark.parametrize("split", [0, 2, 5])
def test_online_logsumexp_matches_direct(split):
    values = [-1000.0, 3.5, 700.0, -2.0, 699.0]
    expected = 700.0 + math.log(math.exp(0) + math.exp(-1) + math.exp(3.5 - 700) + math.exp(-702))
    assert _native.cpu().testing.online_logsumexp(values, split) == pytest.approx(expected, rel=1e-15)
    assert _native.cpu().testing.online_logsumexp([], 0) == -math.inf


def test_affine_composition_matches_sequential_recurrence():
    maps = [(0.5, 1.0), (2.0, -3.0), (0.9, 0.25)]
    x = 7.0
    for a, b in maps:
        x = a * x + b
    assert _native.cpu().testing.affine_compose(maps, 7.0) == pytest.approx(x)
