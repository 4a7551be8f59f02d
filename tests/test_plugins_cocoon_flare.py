"""Built-in model plugin of paper 34 (optical flares of BBH merger remnants in AGN discs): cocoon_flare."""

from __future__ import annotations

import math

import numpy as np
import pytest

from feedbackkit import registry
from feedbackkit.plugins import cocoon_flare as cf

# ---- registry and metadata -------------------------------------------------------------------


def test_registry_discovers_cocoon_flare():
    (entry,) = registry.entries()["cocoon_flare"]
    assert entry.builtin and entry.target == "feedbackkit.plugins.cocoon_flare:cocoon_flare"
    method = registry.get("cocoon_flare")
    assert method.kind == "model" and method.available()
    assert isinstance(method(), cf.CocoonFlareModel)


def test_method_metadata():
    m = cf.cocoon_flare
    assert m.name == "cocoon_flare" and m.kind == "model" and m.requires == ()
    assert m.paper.arxiv == "2304.10567" and m.paper.year == 2023
    assert "Binary Black Hole Merger Remnants" in m.paper.title and "Active Galactic Nuclei" in m.paper.title
    assert m.extras["planck_band_integral"] is cf.planck_band_integral


def test_fn_returns_model_with_documented_methods():
    model = cf.cocoon_flare.fn()
    assert isinstance(model, cf.CocoonFlareModel)
    for name in (
        "accretion_rate",
        "jet_power",
        "breakout_time",
        "cocoon_velocity",
        "cocoon_energy",
        "ejecta_mass",
        "ejecta_velocity",
        "diffusion_time",
        "crossing_time",
        "flare_delay",
        "flare_duration",
        "luminosity",
        "luminosity_ode",
        "solve_ode",
        "radiated_energy",
        "photosphere_radius",
        "temperature",
        "band_luminosity",
        "agn_band_luminosity",
        "summary",
    ):
        assert callable(getattr(model, name)), name
    assert all(math.isfinite(v) and v > 0 for v in model.summary().values())


# ---- formulas ------------------------------------------------------------------------------


def test_chain_of_formulas_by_hand():
    model = cf.cocoon_flare.fn(density=1e-9, sound_speed=1e6, scale_height=1e13, kick_velocity=1e7)
    v = model.relative_velocity()
    mdot = 4 * math.pi * cf.G**2 * (100 * cf.M_SUN) ** 2 * 1e-9 / (v**2 + 1e12) ** 1.5
    assert model.accretion_rate() == pytest.approx(mdot, rel=1e-12)
    lj = 0.1 * mdot * cf.C**2
    assert model.jet_power() == pytest.approx(lj, rel=1e-12)
    tb = (1e-9 * 1e65 / lj) ** (1 / 3)
    assert model.breakout_time() == pytest.approx(tb, rel=1e-12)
    mej = 4 * math.pi / 3 * 1e-9 * 1e39
    vej = math.sqrt(lj * tb / mej)
    assert model.ejecta_mass() == pytest.approx(mej, rel=1e-12)
    assert model.diffusion_time() == pytest.approx(math.sqrt(2 * 0.34 * mej / (13.8 * cf.C * vej)), rel=1e-12)
    # a quarter orbit when the kick vanishes
    still = cf.cocoon_flare.fn(kick_velocity=0.0)
    assert still.crossing_time() == pytest.approx(math.pi / (2 * still.disc.omega), rel=1e-12)


def test_ode_matches_closed_form():
    model = cf.cocoon_flare.fn()
    t0, td = model.initial_time(), model.diffusion_time()
    sol = model.solve_ode(t0 + 6 * td, steps=4000)
    ts, lum = sol.time, sol.luminosity
    exact = model.initial_energy() * t0 / td**2 * np.exp(-(ts**2 - t0**2) / (2 * td**2))
    np.testing.assert_allclose(lum, exact, rtol=1e-6, atol=0)
    # and through the observed-time interface
    t_obs = model.flare_delay() + np.linspace(0, 4 * td, 50)
    np.testing.assert_allclose(model.luminosity_ode(t_obs), model.luminosity(t_obs), rtol=1e-6)
    assert model.luminosity(model.flare_delay() - 1.0) == 0.0


def _trapz(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)))


def test_energy_conservation():
    """E₀ = E(t) + ∫ L dt + ∫ E/t dt (radiated + adiabatic losses), and ∫ L dt matches its closed form."""
    model = cf.cocoon_flare.fn()
    t0, td = model.initial_time(), model.diffusion_time()
    sol = model.solve_ode(t0 + 12 * td, steps=8000)
    e0 = model.initial_energy()
    np.testing.assert_allclose(sol.energy + sol.radiated + sol.adiabatic, e0, rtol=1e-12)
    # the accumulated ∫ L dt agrees with a quadrature of L and, by t₀ + 12 t_d, with the closed form
    assert sol.radiated[-1] == pytest.approx(model.radiated_energy(), rel=1e-6)
    assert sol.radiated[-1] == pytest.approx(_trapz(sol.luminosity, sol.time), rel=1e-5)
    assert sol.energy[-1] < 1e-20 * e0
    # with t₀ ≪ t_d most of E₀ goes into expansion; with t₀ ≫ t_d almost all of it is radiated
    assert model.initial_time() < model.diffusion_time() and 0 < model.radiated_energy() < 0.5 * e0
    thin = cf.cocoon_flare.fn(opacity=1e-6)
    assert thin.initial_time() > 10 * thin.diffusion_time()
    assert 0.9 * thin.initial_energy() < thin.radiated_energy() < thin.initial_energy()


def test_planck_band_integral_limits():
    temps = np.array([300.0, 5772.0, 3e4, 1e6])
    full = cf.planck_band_integral(temps, 0.0, math.inf)
    np.testing.assert_allclose(full, cf.SIGMA_SB * temps**4, rtol=1e-12)
    # bands add up, and a direct quadrature of π B_λ agrees
    lo, mid, hi = 300e-7, 550e-7, 900e-7
    parts = cf.planck_band_integral(temps, lo, mid) + cf.planck_band_integral(temps, mid, hi)
    np.testing.assert_allclose(parts, cf.planck_band_integral(temps, lo, hi), rtol=1e-12)
    lam = np.linspace(lo, hi, 200001)
    for t, got in zip(temps, cf.planck_band_integral(temps, lo, hi), strict=True):
        x = cf.H_PLANCK * cf.C / (lam * cf.K_B * t)
        b = 2 * math.pi * cf.H_PLANCK * cf.C**2 / lam**5 / np.expm1(x)
        assert got == pytest.approx(_trapz(b, lam), rel=1e-8)
    # Rayleigh–Jeans limit: ∫ π B_λ dλ → (2π c k T / 3)(λ₁⁻³ − λ₂⁻³) for h c / (λ k T) ≪ 1
    t = 1e9
    rj = 2 * math.pi * cf.C * cf.K_B * t / 3 * (lo**-3 - hi**-3)
    assert cf.planck_band_integral(t, lo, hi) == pytest.approx(rj, rel=1e-3)
    assert cf.band_fraction(0.0, "optical") == 0.0
    assert 0 < cf.band_fraction(6000.0, "optical") < 1


def test_agn_disc_band_luminosity():
    model = cf.cocoon_flare.fn()
    total = model.agn_band_luminosity((0.0, math.inf))
    assert total == pytest.approx(0.1 * model.eddington_luminosity, rel=1e-9)
    bands = [model.agn_band_luminosity(b) for b in ("u", "g", "r", "i", "z")]
    assert all(0 < b < total for b in bands)
    assert model.agn_band_luminosity("optical") < total


def test_temperature_and_band_luminosity():
    model = cf.cocoon_flare.fn()
    t = model.flare_delay() + np.array([0.0, 0.5, 1.0, 2.0]) * cf.DAY
    temp = model.temperature(t)
    r = model.photosphere_radius(t)
    np.testing.assert_allclose(4 * math.pi * r**2 * cf.SIGMA_SB * temp**4, model.luminosity(t), rtol=1e-12)
    assert np.all(np.diff(temp) < 0)
    optical = model.band_luminosity(t, "optical")
    assert np.all((optical > 0) & (optical < model.luminosity(t)))


# ---- the paper's headline ------------------------------------------------------------------


def test_headline_delays_and_durations():
    """5×10⁶ M☉ SMBH, 100 M☉ remnant: flares ~10–100 days after the GW, lasting days."""
    s = cf.cocoon_flare.fn(smbh_mass=5e6, remnant_mass=100.0).summary()
    assert 10.0 <= s["delay_days"] <= 100.0
    assert 1.0 <= s["duration_days"] <= 10.0
    # across crossing radii of 10³–5×10³ R_g the delay stays in the paper's window
    for radius in (1e3, 2e3, 5e3):
        d = cf.cocoon_flare.fn(radius=radius).summary()["delay_days"]
        assert 10.0 <= d <= 100.0, (radius, d)


# ---- bad parameters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("smbh_mass", -5e6),
        ("remnant_mass", -1.0),
        ("remnant_mass", 0.0),
        ("radius", 3.0),
        ("eddington_ratio", 0.0),
        ("aspect_ratio", 1.5),
        ("kick_velocity", -1.0),
        ("kick_velocity", 4e10),
        ("jet_efficiency", float("nan")),
        ("opacity", -0.34),
        ("beta", 0.0),
        ("density", -1e-9),
        ("merger_height", -1.0),
        ("alpha", "x"),
    ],
)
def test_bad_parameters_raise(name, value):
    with pytest.raises(ValueError, match=name):
        cf.cocoon_flare.fn(**{name: value})


def test_bad_band_raises():
    with pytest.raises(ValueError, match="band"):
        cf.band_fraction(5000.0, "xray")
    with pytest.raises(ValueError, match="lam_max"):
        cf.planck_band_integral(5000.0, 5e-5, 4e-5)
