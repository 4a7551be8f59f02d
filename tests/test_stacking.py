"""Tests of the `stacking` family: oriented_stack (flat projection, CPU)."""

from __future__ import annotations

import ast
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from feedbackkit.stacking import ArgumentError, MapGeometry, oriented_stack

STACKING_DIR = pathlib.Path(__file__).resolve().parents[1] / "python" / "feedbackkit" / "stacking"


def offsets(n: int, step: float) -> np.ndarray:
    return (np.arange(2 * n + 1) - n) * step


def sample_coords(pos, angle, n, step, fx=1.0, fy=1.0):
    """(y, x) sample coordinates of one object, [P, P] each, straight from the spec's formula."""
    off = offsets(n, step)
    u = fx * off[None, :] * np.ones((2 * n + 1, 1))
    v = fy * off[:, None] * np.ones((1, 2 * n + 1))
    c, s = math.cos(angle), math.sin(angle)
    x = pos[1] + u * c - v * s
    y = pos[0] + u * s + v * c
    return y, x


def gaussian_map(shape, centres, angles, sig_major, sig_minor, amp=1.0, lobe=None):
    """Elliptical Gaussians with the major axis along each angle; `lobe` = (offset, sigma, amp,
    sides) adds a round lobe at `offset` pixels along side·(major axis direction)."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    out = np.zeros(shape)
    for k, ((y0, x0), a) in enumerate(zip(centres, angles, strict=True)):
        dx, dy = xx - x0, yy - y0
        along = dx * math.cos(a) + dy * math.sin(a)
        across = -dx * math.sin(a) + dy * math.cos(a)
        out += amp * np.exp(-0.5 * ((along / sig_major) ** 2 + (across / sig_minor) ** 2))
        if lobe is not None:
            off, sig, lamp, sides = lobe
            lx = x0 + sides[k] * off * math.cos(a)
            ly = y0 + sides[k] * off * math.sin(a)
            out += lamp * np.exp(-0.5 * ((xx - lx) ** 2 + (yy - ly) ** 2) / sig**2)
    return out


def moments(img: np.ndarray, n: int):
    off = np.arange(2 * n + 1) - n
    v, u = np.meshgrid(off, off, indexing="ij")
    w = np.clip(img, 0, None)
    tot = w.sum()
    return (w * u * u).sum() / tot, (w * v * v).sum() / tot, (w * u * v).sum() / tot, (w * u).sum() / tot


# ---- agreement with an independent gather ---------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bilinear_matches_map_coordinates(dtype):
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(2, 90, 110)).astype(dtype)
    n, step = 7, 0.73
    pos = rng.uniform(15, 75, size=(12, 2))
    res = oriented_stack(maps, pos, np.zeros(12), half_width=n, step=step)
    assert res.sum.shape == (1, 2, 15, 15) and res.weight_sum.shape == (1, 15, 15)
    assert res.count.tolist() == [12]
    np.testing.assert_array_equal(res.weight_sum, 12.0)
    for b in range(2):
        ref = sum(
            map_coordinates(maps[b].astype(np.float64), sample_coords(p, 0.0, n, step), order=1) for p in pos
        )
        np.testing.assert_allclose(res.sum[0, b], ref, atol=1e-6, rtol=0)
    np.testing.assert_allclose(res.stack()[0], res.sum[0] / 12.0)


def test_nearest_matches_order_zero():
    rng = np.random.default_rng(1)
    m = rng.normal(size=(60, 70))
    n = 5
    # fractional parts in [0.1, 0.4]: no .5 ties with step 1
    pos = rng.integers(15, 45, size=(8, 2)) + rng.uniform(0.1, 0.4, size=(8, 2))
    res = oriented_stack(m, pos, np.zeros(8), half_width=n, interpolation="nearest")
    ref = sum(map_coordinates(m, sample_coords(p, 0.0, n, 1.0), order=0) for p in pos)
    np.testing.assert_allclose(res.sum[0, 0], ref, atol=1e-12)


def bilinear_reference(m, mask, pos, angles, n, step, fx, fy, w, groups, g):
    """Plain float64 loop following the documented bilinear + masking rule."""
    ny, nx = m.shape
    p = 2 * n + 1
    s = np.zeros((g, p, p))
    ws = np.zeros((g, p, p))
    cnt = np.zeros(g, dtype=np.int64)
    for i in range(len(pos)):
        ys, xs = sample_coords(pos[i], angles[i], n, step, fx[i], fy[i])
        any_valid = False
        for a in range(p):
            for b in range(p):
                x, y = xs[a, b], ys[a, b]
                ix, iy = math.floor(x), math.floor(y)
                tx, ty = x - ix, y - iy
                val, ok = 0.0, True
                for dy, wy in ((0, 1 - ty), (1, ty)):
                    for dx, wx in ((0, 1 - tx), (1, tx)):
                        if wy * wx == 0:
                            continue
                        yy, xx = iy + dy, ix + dx
                        if not (0 <= yy < ny and 0 <= xx < nx) or not mask[yy, xx]:
                            ok = False
                        else:
                            val += wy * wx * m[yy, xx]
                if ok:
                    s[groups[i], a, b] += w[i] * val
                    ws[groups[i], a, b] += w[i]
                    any_valid = True
        cnt[groups[i]] += any_valid
    return s, ws, cnt


def test_rotated_flipped_masked_matches_reference_loop():
    rng = np.random.default_rng(2)
    m = rng.normal(size=(40, 50))
    mask = rng.uniform(size=m.shape) > 0.1
    k = 9
    pos = rng.uniform(-3, 50, size=(k, 2))
    angles = rng.uniform(-4, 4, size=k)
    fx = rng.choice([-1.0, 1.0], size=k)
    fy = rng.choice([-1.0, 1.0], size=k)
    w = rng.uniform(0, 2, size=k)
    groups = rng.integers(0, 3, size=k)
    n, step = 4, 1.3
    res = oriented_stack(
        m,
        pos,
        angles,
        flip_x=fx,
        flip_y=fy,
        weights=w,
        groups=groups,
        num_groups=4,
        mask=mask,
        half_width=n,
        step=step,
    )
    s, ws, cnt = bilinear_reference(m, mask, pos, angles, n, step, fx, fy, w, groups, 4)
    np.testing.assert_allclose(res.sum[:, 0], s, atol=1e-9)
    np.testing.assert_allclose(res.weight_sum, ws, atol=1e-12)
    np.testing.assert_array_equal(res.count, cnt)
    assert res.count[3] == 0 and np.isnan(res.stack()[3]).all()


# ---- orientation and flips --------------------------------------------------------------------


def injected(angles, lobe_sides=None, shape=(200, 200)):
    grid = [(y, x) for y in range(30, shape[0] - 20, 45) for x in range(30, shape[1] - 20, 45)]
    centres = np.array(grid[: len(angles)], dtype=np.float64) + 0.3
    lobe = None if lobe_sides is None else (6.0, 1.5, 0.7, lobe_sides)
    return gaussian_map(shape, centres, angles, 5.0, 2.0, lobe=lobe), centres


def test_rotation_aligns_major_axis_with_x():
    rng = np.random.default_rng(3)
    angles = rng.uniform(-math.pi, math.pi, size=16)
    m, centres = injected(angles)
    n = 12
    aligned = oriented_stack(m, centres, angles, half_width=n).stack()[0, 0]
    ixx, iyy, ixy, _ = moments(aligned, n)
    assert ixx > 4 * iyy
    assert abs(ixy) < 0.05 * ixx
    unaligned = oriented_stack(m, centres, np.zeros(16), half_width=n).stack()[0, 0]
    uxx, uyy, _, _ = moments(unaligned, n)
    assert uxx < 2 * uyy  # random orientations: much rounder


def test_alpha_plus_pi_point_symmetric_template():
    rng = np.random.default_rng(4)
    angles = rng.uniform(-math.pi, math.pi, size=9)
    m, centres = injected(angles)
    n = 10
    a = oriented_stack(m, centres, angles, half_width=n).stack()[0, 0]
    b = oriented_stack(m, centres, angles + math.pi, half_width=n).stack()[0, 0]
    # α + π samples the point reflection of every offset
    np.testing.assert_allclose(b, a[::-1, ::-1], atol=1e-9)
    # and the template is point-symmetric, so up to interpolation error the stack is unchanged
    np.testing.assert_allclose(b, a, atol=0.02)


def test_flip_negates_odd_structure():
    rng = np.random.default_rng(5)
    angles = rng.uniform(-math.pi, math.pi, size=16)
    sides = rng.choice([-1.0, 1.0], size=16)
    m, centres = injected(angles, lobe_sides=sides)
    n = 12
    plain = oriented_stack(m, centres, angles, half_width=n).stack()[0, 0]
    flipped = oriented_stack(m, centres, angles, flip_x=sides, half_width=n).stack()[0, 0]
    anti = oriented_stack(m, centres, angles, flip_x=-sides, half_width=n).stack()[0, 0]
    # lobe on +x with the flips, on -x with the flips toggled
    _, _, _, mean_u = moments(flipped, n)
    assert mean_u > 0.5
    np.testing.assert_allclose(anti, flipped[:, ::-1], atol=1e-9)
    # without flips the lobes on both sides nearly cancel: the odd part is much smaller
    odd_plain = np.abs(plain - plain[:, ::-1]).max()
    odd_flip = np.abs(flipped - flipped[:, ::-1]).max()
    assert odd_plain < 0.3 * odd_flip
    # flip_y mirrors rows
    fy = oriented_stack(m, centres, angles, flip_x=sides, flip_y=-1, half_width=n).stack()[0, 0]
    np.testing.assert_allclose(fy, flipped[::-1, :], atol=1e-9)


# ---- weights, groups, masks, edges ----------------------------------------------------------


def test_weights_and_groups_sum_single_object_stacks():
    rng = np.random.default_rng(6)
    maps = rng.normal(size=(3, 50, 60))
    k = 10
    pos = rng.uniform(5, 45, size=(k, 2))
    angles = rng.uniform(-3, 3, size=k)
    w = rng.uniform(0, 3, size=k)
    groups = rng.integers(0, 3, size=k)
    kw = {"half_width": 6, "step": 0.9, "interpolation": "bicubic"}
    res = oriented_stack(maps, pos, angles, weights=w, groups=groups, **kw)
    assert res.sum.shape == (3, 3, 13, 13)
    for g in range(3):
        s = np.zeros((3, 13, 13))
        ws = np.zeros((13, 13))
        c = 0
        for i in np.flatnonzero(groups == g):
            one = oriented_stack(maps, pos[i : i + 1], angles[i : i + 1], **kw)
            s += w[i] * one.sum[0]
            ws += w[i] * one.weight_sum[0]
            c += int(one.count[0])
        np.testing.assert_allclose(res.sum[g], s, atol=1e-10)
        np.testing.assert_allclose(res.weight_sum[g], ws, atol=1e-12)
        assert res.count[g] == c
    total = res.total()
    np.testing.assert_allclose(total.sum[0], res.sum.sum(0))


def test_mask_semantics():
    m = np.arange(40 * 40, dtype=np.float64).reshape(40, 40)
    mask = np.ones((40, 40), dtype=bool)
    mask[0:15, 0:15] = False  # object 0 lies entirely inside the masked block
    mask[30, 30] = False  # one pixel near object 1
    pos = np.array([[7.0, 7.0], [30.0, 28.0]])
    res = oriented_stack(m, pos, np.zeros(2), groups=[0, 1], mask=mask, half_width=3)
    assert res.count.tolist() == [0, 1]
    assert (res.weight_sum[0] == 0).all() and (res.sum[0] == 0).all()
    ws = res.weight_sum[1]
    # integer positions, step 1: each sample reads one pixel; only (30, 30) is excluded
    assert ws[3, 5] == 0 and ws.sum() == 48
    np.testing.assert_allclose(res.stack()[1, 0][ws > 0], (m[27:34, 25:32][ws > 0]))
    # half-pixel shift: every sample whose bilinear stencil touches (30, 30) is masked
    res2 = oriented_stack(m, pos + 0.5, np.zeros(2), mask=mask.astype(np.int32), half_width=3)
    ws2 = res2.weight_sum[0]
    assert ws2.sum() == 49 - 4 and (ws2[2:4, 4:6] == 0).all()
    # float masks are read as nonzero = valid
    res3 = oriented_stack(m, pos + 0.5, np.zeros(2), mask=mask.astype(np.float32), half_width=3)
    np.testing.assert_array_equal(res3.weight_sum, res2.weight_sum)


def test_out_of_map_samples_are_masked():
    m = np.ones((20, 30))
    pos = np.array([[10.0, 1.0], [10.0, 200.0], [-50.0, 5.0]])
    res = oriented_stack(m, pos, np.zeros(3), groups=[0, 1, 2], half_width=4)
    assert res.count.tolist() == [1, 0, 0]
    ws = res.weight_sum[0]
    assert (ws[:, :3] == 0).all() and (ws[:, 3:] == 1).all()  # x = -3..-1 leave the map
    np.testing.assert_allclose(res.stack()[0, 0][:, 3:], 1.0)
    # bicubic needs a one-pixel margin (except at exact pixel centres)
    cub = oriented_stack(m, [[10.0, 1.5]], [0.0], half_width=4, interpolation="bicubic", step=1.0)
    assert (cub.weight_sum[0][:, :4] == 0).all() and (
        cub.weight_sum[0][:, 4:] == 1
    ).all()  # x = 1.5 + (b - 4)
    # a sample exactly on the last pixel centre is inside for bilinear
    edge = oriented_stack(m, [[19.0, 29.0]], [0.0], half_width=1)
    assert edge.weight_sum[0].tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 0]]


@pytest.mark.parametrize("degree", [1, 2])
def test_bicubic_reproduces_polynomials(degree):
    yy, xx = np.mgrid[0:60, 0:70].astype(np.float64)

    def field(y, x):
        f = 1.5 + 0.3 * x - 0.2 * y
        if degree == 2:
            f = f + 0.01 * x * x + 0.02 * x * y - 0.015 * y * y
        return f

    m = field(yy, xx)
    rng = np.random.default_rng(7)
    pos = rng.uniform(20, 40, size=(6, 2))
    angles = rng.uniform(-3, 3, size=6)
    n, step = 8, 1.1
    for i in range(6):
        res = oriented_stack(
            m, pos[i : i + 1], angles[i : i + 1], half_width=n, step=step, interpolation="bicubic"
        )
        y, x = sample_coords(pos[i], angles[i], n, step)
        assert (res.weight_sum[0] == 1).all()
        np.testing.assert_allclose(res.sum[0, 0], field(y, x), atol=1e-9)


DETERMINISM_SCRIPT = """
import sys, numpy as np
from feedbackkit.stacking import oriented_stack
rng = np.random.default_rng(8)
m = rng.normal(size=(2, 300, 300)).astype(np.float32)
pos = rng.uniform(0, 300, size=(3000, 2))
ang = rng.uniform(-3, 3, 3000)
r = oriented_stack(m, pos, ang, groups=rng.integers(0, 4, 3000), weights=rng.uniform(0, 1, 3000),
                   half_width=10, step=0.8, interpolation="bicubic")
out = r.sum.tobytes() + r.weight_sum.tobytes() + r.count.tobytes()
"""


def test_determinism_across_thread_counts(tmp_path):
    from feedbackkit import _native

    here: dict[str, object] = {}
    exec(DETERMINISM_SCRIPT, here)
    # this process runs with the default thread count; the child with a different one
    threads = "1" if _native.cpu().omp_max_threads() > 1 else "3"
    env = dict(os.environ, OMP_NUM_THREADS=threads)
    script = DETERMINISM_SCRIPT + "sys.stdout.buffer.write(out)\n"
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, check=True, cwd=tmp_path
    )
    assert len(proc.stdout) > 0 and proc.stdout == here["out"]


# ---- inputs -----------------------------------------------------------------------------------


def test_accepts_lists_torch_and_strided_arrays():
    rng = np.random.default_rng(9)
    big = rng.normal(size=(2, 40, 80))
    m = big[:, :, ::2]  # non-contiguous view
    pos = [[20.0, 20.0], [15.5, 22.25]]
    ref = oriented_stack(np.ascontiguousarray(m), pos, [0.3, 1.0], half_width=4)
    res = oriented_stack(m, pos, [0.3, 1.0], half_width=4)
    np.testing.assert_array_equal(res.sum, ref.sum)
    swapped = oriented_stack(np.ascontiguousarray(m).astype(">f8"), pos, [0.3, 1.0], half_width=4)
    np.testing.assert_array_equal(swapped.sum, ref.sum)
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        t = oriented_stack(
            torch.from_numpy(np.ascontiguousarray(m)),
            torch.tensor(pos, dtype=torch.float64),
            torch.tensor([0.3, 1.0], dtype=torch.float64),
            half_width=4,
        )
        np.testing.assert_array_equal(t.sum, ref.sum)


def test_stacking_package_does_not_import_torch():
    for path in STACKING_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(name.split(".")[0] == "torch" for name in names), path


M = np.zeros((20, 20))
GEOMETRY = MapGeometry("car", (0.0, 0.0), (10.0, 10.0), ((-0.01, 0.0), (0.0, 0.01)))
P = np.array([[5.0, 5.0], [10.0, 10.0]])
A = np.zeros(2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"angles": np.zeros(3)}, "angles"),
        ({"angles": [0.0, np.nan]}, "angles"),
        ({"flip_x": [1, 0]}, "flip_x"),
        ({"flip_y": 2}, "flip_y"),
        ({"half_width": 0}, "half_width"),
        ({"half_width": 2.5}, "half_width"),
        ({"step": 0.0}, "step"),
        ({"step": math.inf}, "step"),
        ({"maps": np.zeros(20)}, "maps"),
        ({"maps": np.zeros((1, 1, 20, 20))}, "maps"),
        ({"maps": np.zeros((20, 20), dtype=np.int64)}, "maps"),
        ({"positions": np.zeros((2, 3))}, "positions"),
        ({"positions": [[np.nan, 1.0], [1.0, 1.0]]}, "positions"),
        ({"weights": [1.0, -1.0]}, "weights"),
        ({"weights": [1.0, np.nan]}, "weights"),
        ({"weights": [1.0]}, "weights"),
        ({"groups": [0, -1]}, "groups"),
        ({"groups": [0, 3], "num_groups": 2}, "groups"),
        ({"groups": [0.0, 1.0]}, "groups"),
        ({"num_groups": 0}, "num_groups"),
        ({"mask": np.ones((20, 21), dtype=bool)}, "mask"),
        ({"interpolation": "cubic"}, "interpolation"),
        ({"projection": "tan"}, "needs 'geometry'"),
        ({"projection": "zea", "geometry": "car"}, "needs 'geometry'"),
        ({"geometry": GEOMETRY}, "only with projection='tan' or 'zea'"),
        ({"projection": "tan", "geometry": GEOMETRY, "positions": [[2.0, 0.0], [0.0, 0.0]]}, "dec"),
        ({"projection": "car"}, "projection"),
    ],
)
def test_bad_inputs(kwargs, match):
    args = {"maps": M, "positions": P, "angles": A, "half_width": 2, **kwargs}
    with pytest.raises(ArgumentError, match=match):
        oriented_stack(args.pop("maps"), args.pop("positions"), args.pop("angles"), **args)
    assert issubclass(ArgumentError, ValueError)


def test_native_checks_values():
    from feedbackkit import _native
    from feedbackkit.stacking._views import view

    maps = np.zeros((1, 10, 10))
    pos = np.array([[1.0, 2.0]])
    ang = np.zeros(1)
    groups = np.array([5], dtype=np.int64)
    s, ws, c = np.zeros((2, 1, 3, 3)), np.zeros((2, 3, 3)), np.zeros(2, dtype=np.int64)

    def call(group_ids, half_width):
        flat, no_geometry, bilinear = 0, None, 1
        views = (view(maps), view(pos), view(ang), None, None, group_ids, None)
        outputs = (view(s), view(ws), view(c))
        _native.cpu().oriented_stack(*views, half_width, 1.0, bilinear, flat, no_geometry, *outputs)

    with pytest.raises(ValueError, match="groups"):
        call(view(groups), 1)  # group 5 of 2
    with pytest.raises(ValueError, match="sum"):
        call(None, 2)  # outputs sized for half_width 1


def test_empty_catalog():
    res = oriented_stack(np.ones((10, 10)), np.zeros((0, 2)), np.zeros(0), half_width=2, num_groups=2)
    assert res.count.tolist() == [0, 0] and (res.weight_sum == 0).all()
