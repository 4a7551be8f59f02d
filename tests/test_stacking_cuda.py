"""stacking with torch tensors: the CUDA kernels against the CPU kernels on shared cases (flat, tan
and zea frames; nearest, bilinear and bicubic; every mask dtype; groups, weights, flips; float32
and float64; many chunks, groups and partial windows), bit-for-bit determinism, invalid and fully
masked objects, the empty catalog, strided inputs and streams (``cuda`` marked); and on any
machine: torch CPU tensors giving the NumPy results as tensors, the torch.library ops (opcheck,
torch.compile), and the errors for CUDA tensors without CUDA kernels or mixed with host arrays.

CUDA sums are compared with the CPU's to rounding (the device's cos, sin and atan2 and its FMA
contraction differ from the host's by an ulp), counts and weight sums exactly (the same weights
added in the same order), and sums exactly where every per-sample product is exact."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from feedbackkit import _native
from feedbackkit.stacking import (
    ArgumentError,
    MapGeometry,
    OrientedStack,
    multipoles,
    object_multipoles,
    oriented_stack,
    radial_bins,
)

cuda = pytest.mark.cuda
RES_DEG = 0.05


def car_geometry(shape: tuple[int, int], ra0: float = 30.0) -> MapGeometry:
    return MapGeometry(
        "car", (ra0, 0.0), (shape[1] / 2 - 0.5, shape[0] / 2 - 0.5), ((-RES_DEG, 0.0), (0.0, RES_DEG))
    )


def tan_geometry(shape: tuple[int, int]) -> MapGeometry:
    return MapGeometry(
        "tan", (150.0, 70.0), (shape[1] / 2 - 0.5, shape[0] / 2 - 0.5), ((-RES_DEG, 0.0), (0.0, RES_DEG))
    )


def stack_case(
    seed: int,
    *,
    n_obj: int = 400,
    shape: tuple[int, int] = (90, 110),
    maps: int = 1,
    dtype: type = np.float32,
    half_width: int = 7,
    interpolation: str = "bilinear",
    projection: str = "flat",
    geometry: str = "car",
    mask: str | None = "bool",
    groups: int = 0,
    weights: bool = True,
    flips: bool = True,
    angles: bool = True,
) -> dict[str, object]:
    """Keyword arguments of one oriented_stack / object_multipoles call, NumPy arrays."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    kw: dict[str, object] = {
        "maps": rng.normal(size=(maps, ny, nx)).astype(dtype),
        "angles": rng.uniform(-math.pi, math.pi, n_obj) if angles else np.zeros(n_obj),
        "half_width": half_width,
        "interpolation": interpolation,
        "projection": projection,
    }
    # Most objects well inside the map, some across its edges, a few off it.
    y = rng.uniform(-0.1 * ny, 1.1 * ny, n_obj)
    x = rng.uniform(-0.1 * nx, 1.1 * nx, n_obj)
    if projection == "flat":
        kw["positions"] = np.stack([y, x], axis=1)
        kw["step"] = 0.85
    else:
        geo = car_geometry(shape) if geometry == "car" else tan_geometry(shape)
        world = geo.crval
        dec = np.radians(world[1] + (y - (ny / 2 - 0.5)) * RES_DEG)
        ra = np.radians(world[0] - (x - (nx / 2 - 0.5)) * RES_DEG / math.cos(math.radians(world[1])))
        kw["positions"] = np.stack([dec, ra], axis=1)
        kw["geometry"] = geo
        kw["step"] = math.radians(0.85 * RES_DEG)
    if mask is not None:
        valid = rng.uniform(size=shape) > 0.05
        kw["mask"] = valid.astype(mask) if mask != "float" else valid * rng.uniform(0.5, 2.0, shape)
    if groups:
        kw["groups"] = rng.integers(0, groups, n_obj)
        kw["num_groups"] = groups
    if weights:
        kw["weights"] = rng.uniform(0.0, 2.0, n_obj)
    if flips:
        kw["flip_x"] = rng.choice([-1.0, 1.0], n_obj)
        kw["flip_y"] = -1.0
    return kw


CASES = {
    "flat-bilinear-f32-groups": dict(groups=4),
    "flat-nearest-f64-uint8": dict(interpolation="nearest", dtype=np.float64, mask="uint8", groups=3),
    "flat-bicubic-int32-B5": dict(interpolation="bicubic", mask="int32", maps=5),
    "flat-float-mask-no-flips": dict(mask="float", flips=False, weights=False),
    "flat-plain": dict(mask=None, flips=False, weights=False, groups=0),
    "tan-car-bilinear-int64": dict(projection="tan", mask="int64", groups=5),
    "zea-car-bicubic-f64": dict(projection="zea", interpolation="bicubic", dtype=np.float64),
    "tan-tan-nearest": dict(projection="tan", geometry="tan", interpolation="nearest", maps=2),
    "zea-tan-bilinear": dict(projection="zea", geometry="tan", groups=2),
}
STACK_KEYS = ("maps", "positions", "angles")


def to_torch(kw: dict[str, object], device: str) -> dict[str, object]:
    return {k: torch.from_numpy(v).to(device) if isinstance(v, np.ndarray) else v for k, v in kw.items()}


def call_stack(kw: dict[str, object], **more: object) -> OrientedStack:
    kw = {**kw, **more}
    args = [kw.pop(k) for k in STACK_KEYS]
    return oriented_stack(*args, **kw)


def host(result: OrientedStack) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(t.cpu().numpy() for t in (result.sum, result.weight_sum, result.count))  # type: ignore[return-value]


def assert_matches_cpu(got: OrientedStack, want: OrientedStack, *, exact: bool = False) -> None:
    s, ws, c = host(got)
    np.testing.assert_array_equal(c, want.count)
    np.testing.assert_array_equal(ws, want.weight_sum)
    if exact:
        np.testing.assert_array_equal(s, want.sum)
    else:
        np.testing.assert_allclose(s, want.sum, rtol=1e-11, atol=1e-9)


def ring_kwargs(kw: dict[str, object]) -> dict[str, object]:
    """The object_multipoles arguments of a stack case."""
    drop = ("half_width", "weights", "groups", "num_groups")
    return {k: v for k, v in kw.items() if k not in drop}


def call_rings(kw: dict[str, object], **more: object):
    kw = {**ring_kwargs(kw), **more}
    args = [kw.pop(k) for k in STACK_KEYS]
    return object_multipoles(*args, **kw)


# ---- torch CPU tensors and the torch.library ops (any machine) ---------------------------------


@pytest.mark.parametrize("name", CASES)
def test_torch_cpu_tensors_give_the_numpy_results(name):
    kw = stack_case(1, **CASES[name])
    want = call_stack(kw)
    got = call_stack(to_torch(kw, "cpu"))
    assert isinstance(got.sum, torch.Tensor) and got.sum.dtype == torch.float64
    for g, w in zip(
        (got.sum, got.weight_sum, got.count), (want.sum, want.weight_sum, want.count), strict=True
    ):
        np.testing.assert_array_equal(g.numpy(), w)
    np.testing.assert_array_equal(got.stack().numpy(), want.stack())
    np.testing.assert_array_equal(got.total().sum.numpy(), want.total().sum)
    np.testing.assert_array_equal(got.total().count.numpy(), want.total().count)


def test_torch_cpu_multipoles_give_the_numpy_results():
    kw = stack_case(2, **CASES["flat-bicubic-int32-B5"])
    radii = [0.0, 1.5, 4.0, 30.0]  # the last ring leaves the map for some objects: NaN
    want = call_rings(kw, radii=radii)
    got = call_rings(to_torch(kw, "cpu"), radii=torch.tensor(radii))
    for g, w in zip(got, want, strict=True):
        assert isinstance(g, torch.Tensor)
        np.testing.assert_array_equal(g.numpy(), w)
    image = np.random.default_rng(3).normal(size=(2, 3, 15, 15)).astype(np.float32)
    for g, w in zip(multipoles(torch.from_numpy(image), m_max=9), multipoles(image, m_max=9), strict=True):
        np.testing.assert_array_equal(g.numpy(), w)


def test_torch_cpu_mixes_with_numpy_and_validates_values():
    kw = stack_case(4, n_obj=20)
    got = call_stack({**kw, "maps": torch.from_numpy(kw["maps"])})  # NumPy positions, torch maps
    np.testing.assert_array_equal(got.sum.numpy(), call_stack(kw).sum)
    bad = kw["weights"].copy()
    bad[3] = -1.0
    with pytest.raises(ArgumentError, match="weights"):
        call_stack(to_torch({**kw, "weights": bad}, "cpu"))


def op_cases() -> dict[str, tuple[object, tuple]]:
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(2, 30, 40, generator=g)
    n = 25
    pos = torch.rand(n, 2, generator=g, dtype=torch.float64) * 30 + 2
    ang = torch.rand(n, generator=g, dtype=torch.float64) * 6
    flips = torch.ones(n, 2, dtype=torch.float64)
    flips[::3, 0] = -1
    weights = torch.rand(n, generator=g, dtype=torch.float64)
    groups = torch.randint(0, 3, (n,), generator=g)
    mask = torch.rand(30, 40, generator=g) > 0.1
    geo = [float(v) for v in car_geometry((30, 40)).native()]
    sky = torch.stack(
        [(pos[:, 0] - 14.5) * math.radians(RES_DEG), -(pos[:, 1] - 19.5) * math.radians(RES_DEG)], 1
    )
    sky[:, 1] += math.radians(30.0)
    radii = torch.tensor([0.0, 1.5, 3.0], dtype=torch.float64)
    image = torch.randn(3, 9, 9, dtype=torch.float64, generator=g)
    ops = torch.ops.feedbackkit
    return {
        "stack-flat": (
            ops.oriented_stack,
            (maps, pos, ang, flips, weights, groups, mask, 3, 4, 0.8, "bicubic", "flat", None),
        ),
        "stack-tan": (
            ops.oriented_stack,
            (maps, sky, ang, None, None, None, None, 1, 3, 0.01, "bilinear", "tan", geo),
        ),
        # rings inside the map and without mask: no NaN (opcheck compares without equal_nan)
        "rings": (
            ops.object_multipoles,
            (maps, pos.clamp(5, 24), ang, flips, None, radii, 4, 60, 1.0, "nearest", "flat", None),
        ),
        "multipoles": (ops.multipoles, (image, radii, 4, 60)),
    }


def on_device(args: tuple, device: str) -> tuple:
    return tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in args)


@pytest.mark.parametrize("name", ["stack-flat", "stack-tan", "rings", "multipoles"])
def test_opcheck(name):
    op, args = op_cases()[name]
    torch.library.opcheck(op.default, args)


def test_op_traces_under_torch_compile():
    op, args = op_cases()["stack-flat"]
    expected = op(*args)
    got = torch.compile(lambda *a: op(*a), fullgraph=True, backend="aot_eager")(*args)
    assert all(torch.equal(g, e) for g, e in zip(got, expected, strict=True))


def test_op_refuses_tensors_on_two_devices():
    op, args = op_cases()["multipoles"]
    with pytest.raises(ArgumentError, match="'radii' is on meta"):
        op(args[0], args[1].to("meta"), *args[2:])


class FakeCudaTensor(torch.Tensor):
    """A CPU tensor that says it is on cuda:0, to reach the CUDA dispatch on machines without one."""

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return torch.device("cuda", 0)


def fake_cuda(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).as_subclass(FakeCudaTensor)


def test_cuda_tensors_without_cuda_kernels_raise(monkeypatch):
    try:
        _native.cuda()
    except RuntimeError:
        pass  # the real reason: no CUDA build, or no GPU
    else:  # kernels are usable here: make them unavailable so that no kernel reads the fake tensors

        def unavailable():
            raise RuntimeError("no GPU")

        monkeypatch.setattr(_native, "cuda", unavailable)
    kw = stack_case(5, n_obj=10)
    arrays = {k: fake_cuda(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    with pytest.raises(
        RuntimeError, match="oriented_stack: 'maps' is on cuda:0 but CUDA kernels are unavailable"
    ):
        call_stack(arrays)
    with pytest.raises(
        RuntimeError, match="multipoles: 'image' is on cuda:0 but CUDA kernels are unavailable"
    ):
        multipoles(fake_cuda(np.zeros((5, 5))))


def test_cuda_inputs_must_all_be_tensors_on_that_device():
    kw = stack_case(6, n_obj=10)
    with pytest.raises(ArgumentError, match="'positions' must be a torch tensor on cuda:0 like 'maps'"):
        call_stack({**kw, "maps": fake_cuda(kw["maps"])})
    with pytest.raises(ArgumentError, match="'maps' must be a torch tensor on cuda:0 like 'weights'"):
        call_stack({**kw, "weights": fake_cuda(kw["weights"])})
    with pytest.raises(ArgumentError, match="'maps' is on meta"):
        call_stack({**kw, "maps": torch.from_numpy(kw["maps"]).to("meta")})


def test_host_helpers_refuse_device_tensors():
    with pytest.raises(ArgumentError, match=r"'profile' is on cuda:0; radial_bins works on host arrays"):
        radial_bins(fake_cuda(np.zeros((3, 8))), 2)


# ---- CUDA against the CPU ----------------------------------------------------------------------


@cuda
@pytest.mark.parametrize("name", CASES)
def test_cuda_stack_matches_cpu(name):
    kw = stack_case(7, **CASES[name])
    got = call_stack(to_torch(kw, "cuda"))
    assert got.sum.is_cuda and got.count.is_cuda and got.sum.dtype == torch.float64
    want = call_stack(kw)
    assert_matches_cpu(got, want)
    np.testing.assert_allclose(got.stack().cpu().numpy(), want.stack(), rtol=1e-9, atol=1e-9)
    assert_matches_cpu(got.total(), want.total())


@cuda
def test_cuda_stack_adds_in_the_cpu_order():
    # Nearest samples at α = 0 with unit weights are exact, so the sums are the same bits only
    # when every output adds the same chunk partials in the same order: 59 chunks of 256, 23
    # groups, 3 maps (more (chunk, group) slots than one window of partials holds).
    kw = stack_case(
        8,
        n_obj=15_000,
        maps=3,
        half_width=40,
        interpolation="nearest",
        angles=False,
        weights=False,
        groups=23,
        shape=(200, 240),
    )
    kw["flip_x"] = np.random.default_rng(0).choice([-1.0, 1.0], 15_000)
    assert_matches_cpu(call_stack(to_torch(kw, "cuda")), call_stack(kw), exact=True)


@cuda
@pytest.mark.parametrize(
    ("n_obj", "half_width", "groups", "maps"),
    [(6000, 100, 30, 2), (30_000, 12, 61, 3), (2000, 160, 1, 1), (513, 3, 2, 6)],
)
def test_cuda_stack_many_chunks_groups_and_windows(n_obj, half_width, groups, maps):
    kw = stack_case(9, n_obj=n_obj, half_width=half_width, groups=groups, maps=maps, shape=(300, 340))
    assert_matches_cpu(call_stack(to_torch(kw, "cuda")), call_stack(kw))


@cuda
def test_cuda_stack_is_deterministic():
    kw = to_torch(
        stack_case(10, n_obj=50_000, groups=7, maps=2, interpolation="bicubic", shape=(400, 500)), "cuda"
    )
    first, second = host(call_stack(kw)), host(call_stack(kw))
    for a, b in zip(first, second, strict=True):
        assert a.tobytes() == b.tobytes()


@cuda
def test_cuda_stack_empty_catalog_and_fully_masked_objects():
    kw = to_torch(stack_case(11, n_obj=0, groups=3), "cuda")
    res = call_stack(kw)
    assert res.sum.shape == (3, 1, 15, 15) and not res.sum.any() and not res.weight_sum.any()
    assert res.count.tolist() == [0, 0, 0]
    kw = stack_case(12, n_obj=300, groups=2)
    kw["positions"][:100] += 10_000.0  # off the map: fully masked
    kw["mask"][:] = kw["mask"] & (np.arange(kw["mask"].shape[1]) < 40)  # right part masked
    got, want = call_stack(to_torch(kw, "cuda")), call_stack(kw)
    assert_matches_cpu(got, want)
    assert want.count.sum() < 200


@cuda
def test_cuda_invalid_objects_contribute_nothing_unless_checked():
    kw = stack_case(13, n_obj=200, groups=4)
    bad = {
        "positions": (0, np.array([np.nan, 1.0])),
        "angles": (1, np.inf),
        "flip_x": (2, 0.0),
        "weights": (3, -1.0),
        "groups": (4, 9),
    }
    broken = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    for name, (i, value) in bad.items():
        broken[name][i] = value
    keep = np.ones(200, dtype=bool)
    keep[:5] = False
    valid = {
        k: (v[keep] if isinstance(v, np.ndarray) and v.shape[:1] == (200,) else v) for k, v in kw.items()
    }
    assert_matches_cpu(call_stack(to_torch(broken, "cuda")), call_stack(valid))
    for name in bad:
        one = dict(to_torch(kw, "cuda"))
        value = kw[name].copy()
        value[bad[name][0]] = bad[name][1]
        one[name] = torch.from_numpy(value).cuda()
        with pytest.raises(ArgumentError, match=name):
            call_stack(one, check=True)


@cuda
def test_cuda_stack_reads_strided_inputs_and_follows_the_stream():
    kw = stack_case(14, maps=3, groups=3)
    t = to_torch(kw, "cuda")
    big = torch.zeros((3, 90, 220), dtype=torch.float32, device="cuda")
    big[:, :, ::2] = t["maps"]
    t["maps"] = big[:, :, ::2]
    t["positions"] = t["positions"].t().contiguous().t()  # column-major
    t["flip_x"] = torch.stack([t["flip_x"], t["flip_x"]], 1)[:, 1]
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        got = call_stack(t)
    stream.synchronize()
    assert_matches_cpu(got, call_stack(kw))


@cuda
def test_cuda_without_num_groups_reads_the_groups():
    kw = stack_case(15, groups=6)
    del kw["num_groups"]
    got = call_stack(to_torch(kw, "cuda"))
    assert got.count.shape == (int(kw["groups"].max()) + 1,)
    assert_matches_cpu(got, call_stack(kw))


@cuda
@pytest.mark.parametrize(
    "name",
    ["flat-bilinear-f32-groups", "flat-bicubic-int32-B5", "tan-car-bilinear-int64", "zea-tan-bilinear"],
)
def test_cuda_object_multipoles_match_cpu(name):
    kw = stack_case(16, **CASES[name])
    radii = np.array([0.0, 1.0, 2.5, 6.0, 40.0])
    got = call_rings(to_torch(kw, "cuda"), radii=radii, m_max=9)
    want = call_rings(kw, radii=radii, m_max=9)
    for g, w in zip(got, want, strict=True):
        assert g.is_cuda
        np.testing.assert_allclose(g.cpu().numpy(), w, rtol=1e-10, atol=1e-11)
        np.testing.assert_array_equal(np.isnan(g.cpu().numpy()), np.isnan(w))


@cuda
def test_cuda_object_multipoles_of_invalid_objects_are_nan():
    kw = stack_case(17, n_obj=20)
    kw["angles"][3] = np.nan
    c, s = call_rings(to_torch(kw, "cuda"), radii=[1.0, 2.0])
    assert torch.isnan(c[3]).all() and torch.isnan(s[3]).all()
    with pytest.raises(ArgumentError, match="angles"):
        call_rings(to_torch(kw, "cuda"), radii=[1.0, 2.0], check=True)


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_multipoles_match_cpu(dtype):
    image = torch.randn(4, 2, 41, 41, dtype=dtype, generator=torch.Generator().manual_seed(18))
    image[0, 0, 20, 25] = math.nan
    radii = torch.tensor([0.0, 0.5, 3.0, 7.25, 20.0], dtype=torch.float64)
    got = multipoles(image.cuda(), radii=radii.cuda(), m_max=10, n_theta=101)
    want = multipoles(image.numpy(), radii=radii.numpy(), m_max=10, n_theta=101)
    for g, w in zip(got, want, strict=True):
        assert g.is_cuda and g.shape == (4, 2, 11, 5)
        np.testing.assert_allclose(g.cpu().numpy(), w, rtol=1e-11, atol=1e-12)
        np.testing.assert_array_equal(np.isnan(g.cpu().numpy()), np.isnan(w))


@cuda
@pytest.mark.parametrize("name", ["stack-flat", "stack-tan", "rings", "multipoles"])
def test_cuda_opcheck(name):
    op, args = op_cases()[name]
    torch.library.opcheck(op.default, on_device(args, "cuda"))


@cuda
def test_cuda_ops_match_the_cpu_ops():
    for op, args in op_cases().values():
        for g, w in zip(op(*on_device(args, "cuda")), op(*args), strict=True):
            torch.testing.assert_close(g.cpu(), w, rtol=1e-11, atol=1e-10, equal_nan=True)


@cuda
def test_cuda_workspace_queries():
    module = _native.cuda()
    assert module.multipoles_workspace_bytes(100, 4) == 12 * 100 * 8
    assert module.oriented_stack_workspace_bytes(0, 3, 1, 4, 0) > 0
    small = module.oriented_stack_workspace_bytes(1000, 3, 1, 40, 0)
    assert module.oriented_stack_workspace_bytes(100_000, 3, 1, 40, 1) > small
    with pytest.raises(ValueError, match="positions"):
        module.oriented_stack_workspace_bytes(2**31, 1, 1, 4, 0)
