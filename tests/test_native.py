"""The native modules: build info, shared host-device math, and the CUDA module importing
without a GPU driver."""

from __future__ import annotations

import importlib
import importlib.util
import math
import shutil
import struct
import subprocess
import sys

import pytest
import torch

import feedbackkit
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
def test_softmax_stats_merge_matches_direct(split):
    values = [-1000.0, 3.5, 80.0, -2.0, 79.0]
    z = torch.tensor(values, dtype=torch.float64)
    lse = torch.logsumexp(z, 0).item()
    p = torch.softmax(z, 0)
    entropy = -(p * torch.log_softmax(z, 0)).sum().item()
    got_lse, got_entropy = _native.cpu().testing.softmax_stats(values, split)
    assert got_lse == pytest.approx(lse, rel=1e-6)
    assert got_entropy == pytest.approx(entropy, abs=1e-6)
    assert _native.cpu().testing.softmax_stats([], 0)[0] == -math.inf


def test_softmax_exp_is_accurate_and_safe():
    d = torch.linspace(-87.0, 0.0, 20001).double()  # float32 arguments, exact in float64
    got = torch.tensor([_native.cpu().testing.softmax_exp(float(x)) for x in d], dtype=torch.float64)
    assert ((got - d.exp()) / d.exp()).abs().max().item() < 5e-7
    assert _native.cpu().testing.softmax_exp(-math.inf) < 1e-37
    assert math.isnan(_native.cpu().testing.softmax_exp(math.nan))


def test_affine_composition_matches_sequential_recurrence():
    maps = [(0.5, 1.0), (2.0, -3.0), (0.9, 0.25)]
    x = 7.0
    for a, b in maps:
        x = a * x + b
    assert _native.cpu().testing.affine_compose(maps, 7.0) == pytest.approx(x)


def _all_16bit(dtype: torch.dtype) -> torch.Tensor:
    return torch.arange(65536, dtype=torch.int32).to(torch.int16).view(dtype)


def _same_floats(got: torch.Tensor, expected: torch.Tensor) -> bool:
    """Equal values, NaN matching NaN (+0 and -0 compare equal)."""
    nan = expected.isnan()
    return torch.equal(got.isnan(), nan) and torch.equal(got[~nan], expected[~nan])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16bit_to_float_conversion_is_exact_for_every_value(dtype):
    values = _all_16bit(dtype)
    rows = feedbackkit.sequence_reduce(values, cu_seqlens=torch.arange(65537))  # one value per row
    assert _same_floats(rows, values.float())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_float_to_16bit_rounding_matches_torch(dtype):
    # Random float32 bit patterns (every exponent, NaN and inf included) plus edge cases,
    # written by the backward pass: grad_values[i] = round(upstream[i]) for one-element rows.
    generator = torch.Generator().manual_seed(0)
    bits = torch.randint(-(2**31), 2**31 - 1, (200_000,), generator=generator, dtype=torch.int32)
    edges = torch.tensor(
        [
            65504.0,
            65519.99,
            65520.0,
            2.0**-24,
            2.0**-25,
            1.5 * 2.0**-25,
            2.0**-14,
            1 + 2.0**-11,
            1 + 3 * 2.0**-11,
            3.3895314e38,
            float("inf"),
            -float("inf"),
            -0.0,
            0.0,
        ]
    )
    upstream = torch.cat([bits.view(torch.float32), edges, -edges])
    values = torch.zeros(upstream.numel(), dtype=dtype, requires_grad=True)
    out = feedbackkit.sequence_reduce(values, cu_seqlens=torch.arange(upstream.numel() + 1))
    out.backward(upstream)
    assert _same_floats(values.grad, upstream.to(dtype))


def test_cuda_module_not_loaded_without_gpu():
    if _native.gpu_count() > 0:
        pytest.skip("a GPU is present")
    code = (
        "import sys, torch, feedbackkit; "
        "feedbackkit.sequence_reduce(torch.ones(2, 3), torch.ones(2, 3, dtype=torch.bool)); "
        "feedbackkit.info(); "
        "print('feedbackkit._cuda' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def _fatbin_images(path: str, tmp_path) -> set[tuple[str, int]]:
    """(kind, arch) of every image in a module's .nv_fatbin section, e.g. ("sass", 90), ("ptx", 90)."""
    section = tmp_path / "fatbin.bin"
    subprocess.run(["objcopy", "-O", "binary", "--only-section=.nv_fatbin", path, str(section)], check=True)
    data = section.read_bytes()
    images, offset = set(), 0
    while offset + 16 <= len(data):
        magic, _, header_size, body_size = struct.unpack_from("<IHHQ", data, offset)
        if magic != 0xBA55ED50:  # fatbins are 8-byte aligned; skip padding
            offset += 8
            continue
        entry, end = offset + header_size, offset + header_size + body_size
        while entry < end:
            kind, _, entry_header_size, entry_size = struct.unpack_from("<HHIQ", data, entry)
            (arch,) = struct.unpack_from("<I", data, entry + 28)
            images.add(({1: "ptx", 2: "sass"}.get(kind, str(kind)), arch))
            entry += entry_header_size + entry_size
        offset = end
    return images


@pytest.mark.skipif(
    not _build_info.CUDA_BUILT or shutil.which("objcopy") is None, reason="needs the CUDA build"
)
def test_cuda_module_carries_sm80_sm90_sass_and_compute90_ptx(tmp_path):
    path = importlib.util.find_spec("feedbackkit._cuda").origin
    assert _fatbin_images(path, tmp_path) == {("sass", 80), ("sass", 90), ("ptx", 90)}
