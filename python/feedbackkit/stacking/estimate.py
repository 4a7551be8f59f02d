"""The estimator of paper 33: oriented stack → multipole profiles C_m(r), S_m(r) → region errors.

From the per-group sums of one :func:`~feedbackkit.stacking.oriented_stack` pass (groups =
jackknife regions):

1. the total stack ``Σ_g sum_g / Σ_g weight_sum_g`` and its multipoles (:func:`multipoles`),
   at every pixel radius r = 0 … n of the stack;
2. optionally, radial bins of ``bin_width`` consecutive radii (:func:`radial_bins`; the radius
   of a bin is the mean of its radii);
3. each non-empty group's own stack ``sum_g / weight_sum_g`` and its (binned) multipoles, and
   from those the covariance of the mean profile, :func:`region_covariance` weighted by the
   groups' object counts. Errors are the square roots of its diagonal.

The profile vector whose covariance is returned is ``concatenate([C.ravel(), S.ravel()])``
with C, S of shape [B, m_max + 1, n_r] (so S_0, identically 0, has zero variance). Groups with
no object (count 0) take no part in the errors; fewer than two non-empty groups give no errors
(``None``). A group whose weight sum is 0 at some stack pixel (e.g. partly outside the map) has
NaN there, which propagates into the rings that use that pixel.

Radii are in stack pixels; multiply by the stack's step for an angle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .oriented import OrientedStack, oriented_stack
from .profiles import multipoles, radial_bins, region_covariance

__all__ = ["MultipoleEstimate", "oriented_multipoles", "stack_multipoles"]


@dataclass(frozen=True, eq=False)
class MultipoleEstimate:
    """Stack, multipole profiles and jackknife-by-region errors (B maps, P = 2n + 1, n_r radii)."""

    stack: np.ndarray  #: float64 [B, P, P]: the total stack (NaN where no weight)
    weight_sum: np.ndarray  #: float64 [P, P]: total Σ w·m
    radii: np.ndarray  #: float64 [n_r]: ring (or bin) radius in stack pixels
    C: np.ndarray  #: float64 [B, m_max + 1, n_r]: cosine multipoles of the total stack
    S: np.ndarray  #: float64 [B, m_max + 1, n_r]: sine multipoles of the total stack
    counts: np.ndarray  #: int64 [G]: objects per group
    regions: np.ndarray  #: int64 [R]: the groups with count > 0, whose profiles follow
    region_C: np.ndarray  #: float64 [R, B, m_max + 1, n_r]: each region's own C_m(r)
    region_S: np.ndarray  #: float64 [R, B, m_max + 1, n_r]: each region's own S_m(r)
    C_err: np.ndarray | None  #: float64 like C: region (jackknife) errors; None if R < 2
    S_err: np.ndarray | None  #: float64 like S; None if R < 2
    covariance: np.ndarray | None  #: float64 [K, K], K = 2·C.size, of concat(C.ravel(), S.ravel())

    @property
    def m_max(self) -> int:
        """The highest multipole order in C and S."""
        return int(self.C.shape[-2]) - 1


def stack_multipoles(
    result: OrientedStack, *, m_max: int = 4, bin_width: int = 1, n_theta: int | None = None
) -> MultipoleEstimate:
    """Multipole profiles of an oriented stack with jackknife-by-region errors.

    Args:
        result: per-group sums from :func:`oriented_stack` (groups = jackknife regions).
        m_max: highest multipole order.
        bin_width: radial bin width in stack pixels (1 = no binning).
        n_theta: samples per ring (default as :func:`multipoles`).

    Returns:
        :class:`MultipoleEstimate` (see the module docstring for the definitions).
    """
    total = result.total()
    stack = total.stack()[0]
    n = (stack.shape[-1] - 1) // 2
    regions = np.flatnonzero(result.count > 0)

    def binned_multipoles(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = multipoles(image, m_max=m_max, n_theta=n_theta)
        return radial_bins(c, bin_width), radial_bins(s, bin_width)

    c, s = binned_multipoles(stack)
    region_c, region_s = binned_multipoles(result.stack()[regions])
    radii = radial_bins(np.arange(n + 1, dtype=np.float64), bin_width)

    c_err = s_err = covariance = None
    if regions.size >= 2:
        profiles = np.concatenate([region_c.reshape(regions.size, -1), region_s.reshape(regions.size, -1)], 1)
        _, covariance = region_covariance(profiles, result.count[regions])
        errors = np.sqrt(np.diag(covariance))
        c_err, s_err = errors[: c.size].reshape(c.shape), errors[c.size :].reshape(s.shape)
    return MultipoleEstimate(
        stack=stack,
        weight_sum=total.weight_sum[0],
        radii=radii,
        C=c,
        S=s,
        counts=result.count,
        regions=regions.astype(np.int64),
        region_C=region_c,
        region_S=region_s,
        C_err=c_err,
        S_err=s_err,
        covariance=covariance,
    )


def oriented_multipoles(
    maps: object,
    positions: object,
    angles: object,
    *,
    m_max: int = 4,
    bin_width: int = 1,
    n_theta: int | None = None,
    **stack_options: Any,
) -> MultipoleEstimate:
    """:func:`oriented_stack` (``stack_options``: half_width, step, flips, weights, groups, …)
    followed by :func:`stack_multipoles`."""
    result = oriented_stack(maps, positions, angles, **stack_options)
    return stack_multipoles(result, m_max=m_max, bin_width=bin_width, n_theta=n_theta)
