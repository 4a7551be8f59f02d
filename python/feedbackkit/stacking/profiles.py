"""Profiles of stacked images: ring multipoles, radial binning and region (jackknife) covariance.

NumPy in, NumPy out; this module never imports torch. :func:`multipoles` also takes torch
tensors (CPU or CUDA) and answers torch tensors on their device; the other helpers accept torch
CPU tensors (through ``.numpy()``) when torch is already imported.

Multipole conventions (as :func:`~feedbackkit.stacking.oriented_stack`): an image is indexed
``[row, col] = [y, x]``, of shape P × P with P = 2n + 1 and its centre at pixel ``(n, n)``. The
ring of radius r is sampled at the ``n_theta`` angles θ_j = 2πj / n_theta (j = 0 … n_theta − 1),
measured from +x (columns) toward +y (rows), at

    x = n + r cos θ_j,   y = n + r sin θ_j,

with bilinear interpolation (pixels ``floor(x)``, ``floor(x) + 1`` with weights ``1 − t``, ``t``;
pixels with a zero weight are never read). Then

    C_0 = (1/n_θ) Σ_j f_j,   C_m = (2/n_θ) Σ_j f_j cos mθ_j,   S_m = (2/n_θ) Σ_j f_j sin mθ_j,

for m ≥ 1 and S_0 = 0, so f = C_0 + Σ_m (C_m cos mθ + S_m sin mθ) on the ring. Sums are in
float64, per ring in sample order, so results are bitwise identical for every thread count.
"""

from __future__ import annotations

import numbers

import numpy as np

from .._errors import ArgumentError
from ._views import Array, Arrays, arrays_for, as_numpy, dtype_kind

__all__ = [
    "image_ring_sums",
    "int_at_least",
    "multipoles",
    "radial_bins",
    "region_covariance",
    "ring_radii",
    "ring_samples",
]


def int_at_least(op: str, name: str, value: object, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < lo:
        raise ArgumentError(f"{op}: '{name}' must be an integer >= {lo}; got {value!r}")
    return int(value)


def _real_array(op: str, name: str, value: object, *, from_device: bool = False) -> np.ndarray:
    a = as_numpy(op, name, value, from_device=from_device)
    if a.dtype == np.bool_ or a.dtype.kind not in "iuf":
        raise ArgumentError(f"{op}: '{name}' must be a real numeric array; got dtype {a.dtype}")
    return a


def ring_radii(op: str, radii: object, *, default: np.ndarray, top: float | None) -> np.ndarray:
    """`radii` as a non-empty float64 [n_r] host array, finite, >= 0 and <= `top` (when given).
    Radii are parameters, validated on the host: a tensor on a device is copied back."""
    if radii is None:
        return default
    r = _real_array(op, "radii", radii, from_device=True)
    if r.ndim != 1 or r.shape[0] == 0:
        raise ArgumentError(f"{op}: 'radii' must be a non-empty 1-D array; got shape {list(r.shape)}")
    r = np.ascontiguousarray(r, dtype=np.float64)
    if not np.isfinite(r).all() or (r < 0).any() or (top is not None and (r > top).any()):
        bound = f"in [0, n] = [0, {top:g}] pixels" if top is not None else ">= 0"
        raise ArgumentError(f"{op}: 'radii' must be finite and {bound}")
    return r


def ring_samples(op: str, n_theta: object, n_r: int, m_max: int) -> int:
    """Samples per ring: 20·n_r by default (at least 2·m_max + 1); an explicit value must be
    >= 2·m_max + 1 (m_max below the ring's Nyquist order)."""
    if n_theta is None:
        return max(20 * n_r, 2 * m_max + 1)
    return int_at_least(op, "n_theta", n_theta, 2 * m_max + 1)


def multipoles(
    image: object, *, m_max: int = 4, radii: object = None, n_theta: int | None = None
) -> tuple[Array, Array]:
    """Cosine and sine multipoles C_m(r), S_m(r) of square images about their centre pixel.

    Args:
        image: [..., P, P] real array, P = 2n + 1 odd (leading batch dims allowed; float32 stays
            float32, other real dtypes are read as float64). NaN pixels (e.g. from
            ``OrientedStack.stack()`` where the weight sum is 0) make every C_m, S_m of a ring NaN
            when any of its samples uses such a pixel with a nonzero bilinear weight (S_0 too).
            A torch tensor (CPU or CUDA) gives torch results on its device.
        m_max: highest multipole order (>= 0); outputs hold m = 0 … m_max.
        radii: [n_r] ring radii in pixels, finite and in [0, n] (fractional allowed). Default:
            every pixel radius 0, 1, …, n (n_r = n + 1). Host values (a device tensor is copied
            back to be validated).
        n_theta: samples per ring, at θ_j = 2πj / n_theta. Default 20·n_r, raised to
            2·m_max + 1 if that is larger. An explicit value must be >= 2·m_max + 1 (so m_max
            is below the ring's Nyquist order).

    Returns:
        (C, S), float64 [..., m_max + 1, n_r] each; see the module docstring for the formulas.
        C[..., 0, :] is the ring mean and S[..., 0, :] is 0.
    """
    op = "multipoles"
    m_max = int_at_least(op, "m_max", m_max, 0)
    xp = arrays_for(op, False, {"image": image})
    img = xp.asarray(op, "image", image)
    dtype = xp.dtype_name(img)
    if dtype_kind(dtype) not in "iuf":
        raise ArgumentError(f"{op}: 'image' must be a real numeric array; got dtype {dtype}")
    if img.ndim < 2 or img.shape[-1] != img.shape[-2] or img.shape[-1] % 2 != 1:
        raise ArgumentError(
            f"{op}: 'image' must have shape [..., P, P] with P = 2n + 1 odd; got {list(img.shape)}"
        )
    p = img.shape[-1]
    n = (p - 1) // 2
    r = ring_radii(op, radii, default=np.arange(n + 1, dtype=np.float64), top=n)
    nt = ring_samples(op, n_theta, r.shape[0], m_max)
    flat = xp.cast(img.reshape((-1, p, p)), "float32" if dtype == "float32" else "float64")
    c, s = xp.run(op, image_ring_sums, flat, xp.upload(r), m_max, nt)
    shape = (*img.shape[:-2], m_max + 1, r.shape[0])
    return c.reshape(shape), s.reshape(shape)


def image_ring_sums(xp: Arrays, image: Array, radii: Array, m_max: int, n_theta: int) -> tuple[Array, Array]:
    """Allocates (C, S) [M, m_max + 1, n_r] and runs the native kernel on images [M, P, P]; the
    NumPy path and the torch op share it."""
    shape = (image.shape[0], m_max + 1, radii.shape[0])
    c, s = xp.empty(shape, "float64"), xp.empty(shape, "float64")
    workspace = ("multipoles_workspace_bytes", n_theta, m_max)
    xp.launch("multipoles", [image, radii, n_theta, m_max, c, s], workspace)
    return c, s


def region_covariance(profiles: object, counts: object) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and covariance of the mean from per-region profiles (jackknife-by-region).

    Args:
        profiles: [G, P] per-region profiles (e.g. each group's stacked C_m(r), flattened).
        counts: [G] finite weights >= 0 (objects per region); at least two must be > 0.

    Returns:
        (mean [P], cov [P, P]), float64: ``mean = Σ_g c_g x_g / Σ_g c_g`` and
        ``cov = np.cov(profiles.T, aweights=counts) / G``. With equal counts this is the
        delete-one-region jackknife covariance of the mean, ``(G − 1)/G Σ_g (x̄_(g) − x̄)(x̄_(g) − x̄)ᵀ``.
    """
    op = "region_covariance"
    x = _real_array(op, "profiles", profiles)
    if x.ndim != 2:
        raise ArgumentError(f"{op}: 'profiles' must be 2-D [G, P]; got shape {list(x.shape)}")
    g, p = x.shape
    if g < 2:
        raise ArgumentError(f"{op}: 'profiles' needs at least G = 2 regions; got G = {g}")
    if p < 1:
        raise ArgumentError(f"{op}: 'profiles' must have P >= 1 columns; got shape {list(x.shape)}")
    w = _real_array(op, "counts", counts)
    if w.ndim != 1 or w.shape[0] != g:
        raise ArgumentError(f"{op}: 'counts' must be 1-D of length G = {g}; got shape {list(w.shape)}")
    w = w.astype(np.float64)
    if not np.isfinite(w).all():
        raise ArgumentError(f"{op}: 'counts' must be finite; found NaN or inf")
    if (w < 0).any():
        raise ArgumentError(f"{op}: 'counts' must be >= 0; got {float(w.min())}")
    if int((w > 0).sum()) < 2:
        raise ArgumentError(f"{op}: 'counts' must be > 0 for at least two regions")
    x = x.astype(np.float64)
    mean = np.average(x, axis=0, weights=w)
    cov = np.atleast_2d(np.cov(x.T, aweights=w)) / g
    return mean, cov


def radial_bins(profile: object, width: int) -> np.ndarray:
    """Means of `width` consecutive radial pixels along the last axis.

    Args:
        profile: [..., n_r] real array (e.g. C or S from :func:`multipoles`).
        width: bin width in radial pixels, 1 <= width <= n_r.

    Returns:
        float64 [..., n_r // width]; bin k is the mean of ``profile[..., k·width:(k + 1)·width]``.
        A remainder of ``n_r % width`` trailing (outermost) pixels is dropped. NaN propagates.
    """
    op = "radial_bins"
    a = _real_array(op, "profile", profile)
    if a.ndim < 1:
        raise ArgumentError(f"{op}: 'profile' must be at least 1-D [..., n_r]; got a scalar")
    n_r = a.shape[-1]
    width = int_at_least(op, "width", width, 1)
    if width > n_r:
        raise ArgumentError(f"{op}: 'width' must be <= n_r = {n_r}; got {width}")
    nb = n_r // width
    a = a[..., : nb * width].astype(np.float64)
    return a.reshape((*a.shape[:-1], nb, width)).mean(axis=-1)
