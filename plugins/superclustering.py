"""Paper 33: Superclustering with the Atacama Cosmology Telescope and Dark Energy Survey: II.
Anisotropic large-scale coherence in hot gas, galaxies, and dark matter (arXiv 2409.04535, 2024).

One method of kind ``estimator``: ``oriented_stack_multipoles(data, **options)``. The paper stacks
a thermal SZ (Compton-y) map around galaxy clusters, each cutout rotated so that the cluster's
supercluster orientation lies along +x and flipped so that its denser side lies in a fixed
direction, then decomposes the stack into cosine (and sine) multipoles m = 0 … 4 as functions of
radius, with errors from the scatter between sky regions. The pipeline is
:func:`feedbackkit.stacking.estimate.stack_multipoles` on the per-region sums of one
:func:`feedbackkit.stacking.oriented_stack` pass; see :mod:`feedbackkit.stacking.estimate` for
the definitions (total stack, C_m(r), S_m(r), region covariance).

``data`` is either

- a mapping with the inputs of :func:`~feedbackkit.stacking.oriented_stack`: ``maps``,
  ``positions``, ``angles`` and optionally ``flip_x``, ``flip_y``, ``weights``, ``groups``
  (jackknife regions), ``mask``; ``options`` then take the stack's keyword arguments
  (``half_width`` (required), ``step``, ``projection``, ``geometry``, ``interpolation``,
  ``num_groups``) and the estimator's (``m_max`` = 4, ``bin_width`` = 1, ``n_theta``); or
- an :class:`~feedbackkit.stacking.OrientedStack` already summed per region; ``options`` then
  take only ``m_max``, ``bin_width``, ``n_theta``.

It returns a :class:`~feedbackkit.stacking.estimate.MultipoleEstimate`. Reading FITS maps and
catalogs and stacking a catalog in chunks are in ``extras`` (``read_map``, ``read_catalog``,
``stack_catalog``; FITS needs ``pip install 'feedbackkit[astro]'``), and ``feedbackkit stack``
runs the whole chain from files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from feedbackkit.plugin import Method, Paper
from feedbackkit.stacking import ArgumentError, OrientedStack
from feedbackkit.stacking.estimate import MultipoleEstimate, oriented_multipoles, stack_multipoles
from feedbackkit.stacking.io import read_catalog, read_map
from feedbackkit.stacking.sky_stack import stack_catalog

__all__ = ["PAPER", "oriented_stack_multipoles"]

PAPER = Paper(
    title=(
        "Superclustering with the Atacama Cosmology Telescope and Dark Energy Survey: II. "
        "Anisotropic large-scale coherence in hot gas, galaxies, and dark matter"
    ),
    arxiv="2409.04535",
    year=2024,
)

_NAME = "oriented_stack_multipoles"
_REQUIRED = ("maps", "positions", "angles")
_OPTIONAL = ("flip_x", "flip_y", "weights", "groups", "mask")
_ESTIMATOR_OPTIONS = ("m_max", "bin_width", "n_theta")


def estimate(data: Any, /, **options: Any) -> MultipoleEstimate:
    """Oriented stack → C_m(r), S_m(r) → jackknife-by-region errors (module docstring)."""
    if isinstance(data, OrientedStack):
        extra = sorted(set(options) - set(_ESTIMATOR_OPTIONS))
        if extra:
            raise ArgumentError(
                f"{_NAME}: with an OrientedStack as data the options are {list(_ESTIMATOR_OPTIONS)}; "
                f"got also {extra}"
            )
        return stack_multipoles(data, **options)
    if not isinstance(data, Mapping):
        raise ArgumentError(
            f"{_NAME}: 'data' must be a mapping with {list(_REQUIRED)} (and optionally "
            f"{list(_OPTIONAL)}) or an OrientedStack; got {type(data).__name__}"
        )
    missing = [key for key in _REQUIRED if key not in data]
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if missing or unknown:
        raise ArgumentError(
            f"{_NAME}: 'data' must have keys {list(_REQUIRED)} and may have {list(_OPTIONAL)}; "
            f"missing {missing}, unknown {unknown}"
        )
    inputs = {key: data[key] for key in _OPTIONAL if key in data}
    return oriented_multipoles(data["maps"], data["positions"], data["angles"], **inputs, **options)


oriented_stack_multipoles = Method(
    name=_NAME,
    kind="estimator",
    paper=PAPER,
    summary="Oriented, flipped stack of a map around objects; multipoles C_m(r), S_m(r) with region errors",
    fn=estimate,
    extras={
        "stack_multipoles": stack_multipoles,
        "stack_catalog": stack_catalog,
        "read_map": read_map,
        "read_catalog": read_catalog,
    },
)
