"""Paper 34: Optical Emission Model for Binary Black Hole Merger Remnants Travelling through Discs of
Active Galactic Nuclei (Rodríguez-Ramírez, Bom, Fraga, Nemmen 2023, arXiv 2304.10567).

One method of kind ``model``: ``cocoon_flare.fn(**config)`` returns a :class:`CocoonFlareModel`. A
binary black hole merges *outside* the thin disc of an AGN; the kicked remnant (mass M_bh) plunges
into the disc, accretes at the Bondi–Hoyle–Lyttleton rate, launches a jet whose cocoon, propagating
quasi-parallel to the disc plane, breaks out of the disc surface. The emerging cocoon material expands
homologously and shines like a small supernova (one-zone photon diffusion, Arnett-style). Everything
is numpy only and in cgs units (cm, g, s, erg, K); masses given in solar masses and radii in
gravitational radii are converted once, in the constructor.

Chain of formulas (the choices this module makes are marked *model choice*; the paper fixes the
picture, not every order-unity coefficient):

=====================  ==========================================================================
SMBH disc at radius r  R_g = G M_• / c²,  Ω = (G M_• / r³)^½,  v_K = r Ω.  *model choice*: a thin
                       α-disc of constant aspect ratio h: H = h r, c_s = H Ω, Ṁ_• = λ L_Edd /
                       (η c²) with L_Edd = 4π G M_• m_p c / σ_T and η = 1/12 (the Newtonian
                       thin-disc efficiency for r_in = 6 R_g, so the disc radiates exactly λ L_Edd),
                       Σ = Ṁ_• / (3π α c_s H), ρ = Σ / (2H). ``density``, ``sound_speed`` and
                       ``scale_height`` override the model.
plunge into the disc   *model choice*: the merger happens at height z_m above the mid-plane and
                       the kick v_k points towards the disc. Vertical motion in the SMBH potential
                       is harmonic, z(t) = z_m cos Ωt − (v_k/Ω) sin Ωt, so the remnant reaches the
                       mid-plane after t_cross = atan2(z_m Ω, v_k) / Ω (a quarter orbit, π/(2Ω),
                       for v_k → 0; z_m / v_k for a fast kick) with speed v_rel = (v_k² + z_m²Ω²)^½.
BHL accretion          Ṁ = 4π G² M_bh² ρ / (v_rel² + c_s²)^{3/2}.
jet power              L_j = η_j Ṁ c².
cocoon breakout        *model choice*: an energy-driven cocoon (bubble) of radius R(t) = (L_j t³ /
                       ρ)^{1/5}, from L_j t ≈ ρ R³ (R/t)², breaks out when R = H:
                       t_b = (ρ H⁵ / L_j)^{1/3}; its speed then is v_c = dR/dt = 3H / (5 t_b).
cocoon energy, mass    E_c = L_j t_b (jet energy injected until breakout); M_ej = (4π/3) ρ H³
                       (the disc gas swept up by the cocoon); *model choice*: E_c is split equally
                       into kinetic and thermal energy, so v_ej = (2 · E_c/2 / M_ej)^½ = (E_c /
                       M_ej)^½ and E₀ = E_c / 2 at t₀ = H / v_ej (homologous radius R = v_ej t).
diffusion light curve  t_d = (2 κ M_ej / (β c v_ej))^½ with β ≈ 13.8; dE/dt = −E/t − L,
                       L = E t / t_d² (the −E/t term is the adiabatic (pdV) loss), solved by
                       L(t) = (E₀ t₀ / t_d²) exp(−(t² − t₀²) / (2 t_d²)); ∫_{t₀}^∞ L dt =
                       (E₀ t₀ / t_d) (π/2)^½ exp(t₀² / (2 t_d²)) erfc(t₀ / (√2 t_d)).
observed time          the flare starts at t_delay = t_cross + t_b after the GW; a time t after
                       the merger is t_hom = t − t_delay + t₀ on the homologous clock.
duration               time from the start until L falls to half its initial value:
                       (t₀² + 2 ln 2 · t_d²)^½ − t₀.
temperature            R_ph = v_ej t_hom, T = (L / (4π R_ph² σ_SB))^{1/4}.
band luminosity        L_band = L · (π / (σ T⁴)) ∫_band B_λ(T) dλ, the band integral in closed
                       form: with x = h c / (λ k T), ∫_x^∞ u³/(e^u − 1) du = Σ_n e^{−nx}(x³/n +
                       3x²/n² + 6x/n³ + 6/n⁴) for x ≥ 1 and π⁴/15 minus its Bernoulli series for
                       x < 1, so ∫_0^∞ π B_λ dλ = σ T⁴ exactly.
AGN background         standard thin disc: σ T(r)⁴ = (3 G M_• Ṁ_• / (8π r³)) (1 − (r_in / r)^½),
                       r_in = 6 R_g, both faces: L_band = ∫ 4π r σ T⁴ f_band(T) dr, integrated
                       by Gauss–Legendre in y = (r_in / r)^½ (the integrand is y(1 − y) f_band).
=====================  ==========================================================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from feedbackkit.plugin import Method, Paper

__all__ = [
    "BANDS",
    "BETA",
    "PAPER",
    "CocoonFlareModel",
    "DiscState",
    "OdeSolution",
    "band_fraction",
    "cocoon_flare",
    "planck_band_integral",
]

PAPER = Paper(
    title=(
        "Optical Emission Model for Binary Black Hole Merger Remnants Travelling through Discs of "
        "Active Galactic Nuclei"
    ),
    arxiv="2304.10567",
    year=2023,
)

ArrayLike = npt.ArrayLike
Array = npt.NDArray[np.float64]

# ---- physical constants (cgs) -----------------------------------------------------------------

#: Newton's constant G [cm³ g⁻¹ s⁻²].
G = 6.67430e-8
#: Speed of light c [cm s⁻¹].
C = 2.99792458e10
#: Planck constant h [erg s].
H_PLANCK = 6.62607015e-27
#: Boltzmann constant k_B [erg K⁻¹].
K_B = 1.380649e-16
#: Stefan–Boltzmann constant σ_SB = 2π⁵k⁴/(15 h³ c²) [erg cm⁻² s⁻¹ K⁻⁴].
SIGMA_SB = 2.0 * math.pi**5 * K_B**4 / (15.0 * H_PLANCK**3 * C**2)
#: Proton mass m_p [g].
M_PROTON = 1.67262192e-24
#: Thomson cross-section σ_T [cm²].
SIGMA_T = 6.6524587e-25
#: Solar mass M☉ [g].
M_SUN = 1.98841e33
#: One day [s].
DAY = 86400.0
#: Diffusion-time constant β of the one-zone model, t_d = (2κM/(βcv))^½ (Arnett 1982) [1].
BETA = 13.8
#: Efficiency η = L / (Ṁ c²) of a Newtonian thin disc with inner edge r_in = 6 R_g: 1/12 [1].
DISC_EFFICIENCY = 1.0 / 12.0
#: Inner edge of the SMBH's thin disc in gravitational radii [R_g].
DISC_INNER_EDGE = 6.0

#: Wavelength bands [cm] (λ_min, λ_max): the LSST-like u g r i z filters, a broad optical band and the
#: extreme ultraviolet between 10 nm and the Lyman edge.
BANDS: Mapping[str, tuple[float, float]] = {
    "u": (320e-7, 400e-7),
    "g": (400e-7, 552e-7),
    "r": (552e-7, 691e-7),
    "i": (691e-7, 818e-7),
    "z": (818e-7, 922e-7),
    "optical": (400e-7, 700e-7),
    "euv": (10e-7, 91.2e-7),
}

_PI4_15 = math.pi**4 / 15.0
# ∫_0^x u³/(e^u − 1) du = Σ_k c_k x^k for |x| < 2π (from t/(e^t − 1) = Σ B_n t^n / n!).
_SMALL_X = (
    (3, 1.0 / 3.0),
    (4, -1.0 / 8.0),
    (5, 1.0 / 60.0),
    (7, -1.0 / 5040.0),
    (9, 1.0 / 272160.0),
    (11, -1.0 / 13305600.0),
    (13, 1.0 / 622702080.0),
    (15, -691.0 / 2730.0 / math.factorial(12) / 15.0),
)


def _check(
    name: str, value: float, *, low: float = 0.0, strict: bool = True, high: float | None = None
) -> float:
    """``value`` as a float, or ValueError naming ``name`` when it is not finite or out of range."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"cocoon_flare: {name!r} must be a real number; got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"cocoon_flare: {name!r} must be finite; got {value!r}")
    if (strict and v <= low) or (not strict and v < low):
        raise ValueError(f"cocoon_flare: {name!r} must be {'>' if strict else '>='} {low}; got {value!r}")
    if high is not None and v >= high:
        raise ValueError(f"cocoon_flare: {name!r} must be < {high}; got {value!r}")
    return v


def _head(x: Array) -> Array:
    """∫_0^x u³/(e^u − 1) du for 0 ≤ x < 1 by its Bernoulli series (error < 1e-15 relative)."""
    out = np.zeros_like(x)
    for k, c in _SMALL_X:
        out += c * x**k
    return out


def _tail(x: Array) -> Array:
    """∫_x^∞ u³/(e^u − 1) du for x ≥ 1: Σ_n e^{−nx}(x³/n + 3x²/n² + 6x/n³ + 6/n⁴), n ≤ 40/x + 1."""
    if x.size == 0:
        return np.zeros_like(x)
    n_max = math.ceil(40.0 / float(x.min())) + 1
    n = np.arange(1, n_max + 1, dtype=np.float64)[:, None]
    xs = x[None, :]
    return np.sum(np.exp(-n * xs) * (xs**3 / n + 3 * xs**2 / n**2 + 6 * xs / n**3 + 6 / n**4), axis=0)


def _between(x_lo: Array, x_hi: Array) -> Array:
    """∫_{x_lo}^{x_hi} u³/(e^u − 1) du for 0 ≤ x_lo ≤ x_hi ≤ ∞, without cancellation when both are small."""
    shape = np.shape(x_lo)
    x_lo = np.atleast_1d(np.minimum(x_lo, 700.0))  # the integrand is < 1e-296 beyond 700
    x_hi = np.atleast_1d(np.minimum(x_hi, 700.0))
    out = np.empty_like(x_lo)
    both_small = x_hi < 1.0
    out[both_small] = _head(x_hi[both_small]) - _head(x_lo[both_small])
    both_large = x_lo >= 1.0
    out[both_large] = _tail(x_lo[both_large]) - _tail(x_hi[both_large])
    split = ~both_small & ~both_large
    out[split] = (_PI4_15 - _head(x_lo[split])) - _tail(x_hi[split])
    return out.reshape(shape)


def planck_band_integral(temperature: ArrayLike, lam_min: float, lam_max: float) -> Array:
    """∫_{λ_min}^{λ_max} π B_λ(T) dλ [erg cm⁻² s⁻¹]: the flux a blackbody surface emits in the band.

    π B_λ = 2π h c² λ⁻⁵ / (exp(h c / (λ k T)) − 1); with x = h c / (λ k T) the integral is
    (2π k⁴ T⁴ / (h³ c²)) [F(x_max) − F(x_min)], F(x) = ∫_x^∞ u³/(e^u − 1) du, evaluated in closed form
    (x_max from λ_min). ``lam_max = inf`` and ``lam_min = 0`` are allowed: over all wavelengths the
    result is σ_SB T⁴. T [K], λ [cm]."""
    lam_min = _check("lam_min", lam_min, strict=False)
    lam_max = float(lam_max)
    if not lam_max > lam_min:
        raise ValueError(f"cocoon_flare: 'lam_max' must be > 'lam_min'; got {lam_max!r} <= {lam_min!r}")
    t = np.asarray(temperature, dtype=np.float64)
    if np.any(~np.isfinite(t)) or np.any(t < 0):
        raise ValueError("cocoon_flare: 'temperature' must be finite and >= 0")
    tt = np.maximum(t, 1e-300)
    hck = H_PLANCK * C / K_B
    x_hi = np.full_like(tt, np.inf) if lam_min == 0.0 else hck / (lam_min * tt)
    x_lo = np.zeros_like(tt) if math.isinf(lam_max) else hck / (lam_max * tt)
    out = 2.0 * math.pi * K_B**4 * tt**4 / (H_PLANCK**3 * C**2) * _between(x_lo, x_hi)
    return np.where(t > 0, out, 0.0)


def band_fraction(temperature: ArrayLike, band: str | tuple[float, float]) -> Array:
    """Fraction of a blackbody's σT⁴ emitted in ``band`` (a name in :data:`BANDS` or (λ_min, λ_max) in cm)."""
    lo, hi = _band(band)
    t = np.asarray(temperature, dtype=np.float64)
    flux = planck_band_integral(t, lo, hi)
    return np.where(t > 0, flux / np.maximum(SIGMA_SB * t**4, 1e-300), 0.0)


def _band(band: str | tuple[float, float]) -> tuple[float, float]:
    if isinstance(band, str):
        if band not in BANDS:
            raise ValueError(f"cocoon_flare: 'band' must be one of {', '.join(BANDS)}; got {band!r}")
        return BANDS[band]
    lo, hi = band
    return _check("band[0]", lo, strict=False), float(hi)


class OdeSolution(NamedTuple):
    """:meth:`CocoonFlareModel.solve_ode` on its grid (homologous clock)."""

    time: Array  #: t [s]
    energy: Array  #: E(t) [erg]
    luminosity: Array  #: L = E t / t_d² [erg s⁻¹]
    radiated: Array  #: ∫_{t₀}^t L dt [erg]
    adiabatic: Array  #: ∫_{t₀}^t E/t dt [erg]


@dataclass(frozen=True)
class DiscState:
    """The SMBH disc where the remnant crosses it (cgs)."""

    radius: float  #: distance from the SMBH r [cm]
    omega: float  #: Keplerian angular frequency Ω [s⁻¹]
    scale_height: float  #: H [cm]
    sound_speed: float  #: c_s [cm s⁻¹]
    density: float  #: mid-plane density ρ [g cm⁻³]
    smbh_accretion_rate: float  #: Ṁ_• [g s⁻¹]


class CocoonFlareModel:
    """Flare of the jet cocoon of a kicked BBH merger remnant crossing an AGN disc (see the module doc).

    Every argument is keyword-only; defaults in brackets are the units:

    smbh_mass           M_• = 5×10⁶ [M☉]        remnant_mass     M_bh = 100 [M☉]
    radius              r = 3000 [R_g]          eddington_ratio  λ = 0.1 [1] (SMBH's L / L_Edd)
    aspect_ratio        h = H/r = 0.01 [1]      alpha            α = 0.1 [1] (disc viscosity)
    kick_velocity       v_k = 200 km/s [cm s⁻¹] (2×10⁷)
    merger_height       z_m = 0.05 r [cm] when None (the merger height above the mid-plane)
    jet_efficiency      η_j = 0.1 [1]           opacity          κ = 0.34 [cm² g⁻¹] (electron scattering)
    beta                β = 13.8 [1]
    density, sound_speed, scale_height: [g cm⁻³], [cm s⁻¹], [cm]; None takes them from the disc model.
    """

    def __init__(
        self,
        *,
        smbh_mass: float = 5e6,
        remnant_mass: float = 100.0,
        radius: float = 3000.0,
        eddington_ratio: float = 0.1,
        aspect_ratio: float = 0.01,
        alpha: float = 0.1,
        kick_velocity: float = 2e7,
        merger_height: float | None = None,
        jet_efficiency: float = 0.1,
        opacity: float = 0.34,
        beta: float = BETA,
        density: float | None = None,
        sound_speed: float | None = None,
        scale_height: float | None = None,
    ) -> None:
        self.smbh_mass = _check("smbh_mass", smbh_mass) * M_SUN
        self.remnant_mass = _check("remnant_mass", remnant_mass) * M_SUN
        self.gravitational_radius = G * self.smbh_mass / C**2
        radius = _check("radius", radius, low=DISC_INNER_EDGE)
        self.radius = radius * self.gravitational_radius
        self.eddington_ratio = _check("eddington_ratio", eddington_ratio)
        self.aspect_ratio = _check("aspect_ratio", aspect_ratio, high=1.0)
        self.alpha = _check("alpha", alpha)
        self.kick_velocity = _check("kick_velocity", kick_velocity, strict=False, high=C)
        self.jet_efficiency = _check("jet_efficiency", jet_efficiency)
        self.opacity = _check("opacity", opacity)
        self.beta = _check("beta", beta)
        overrides = {"density": density, "sound_speed": sound_speed, "scale_height": scale_height}
        for name, value in overrides.items():
            if value is not None:
                _check(name, value)
        self.disc = self._disc(density, sound_speed, scale_height)
        if merger_height is None:
            self.merger_height = 0.05 * self.radius
        else:
            self.merger_height = _check("merger_height", merger_height, strict=False)

    # ---- environment --------------------------------------------------------------------------

    @property
    def eddington_luminosity(self) -> float:
        """L_Edd = 4π G M_• m_p c / σ_T [erg s⁻¹]."""
        return 4.0 * math.pi * G * self.smbh_mass * M_PROTON * C / SIGMA_T

    @property
    def smbh_accretion_rate(self) -> float:
        """Ṁ_• = λ L_Edd / (η c²), η = 1/12 [g s⁻¹]."""
        return self.eddington_ratio * self.eddington_luminosity / (DISC_EFFICIENCY * C**2)

    def _disc(
        self, density: float | None, sound_speed: float | None, scale_height: float | None
    ) -> DiscState:
        omega = math.sqrt(G * self.smbh_mass / self.radius**3)
        h = float(scale_height) if scale_height is not None else self.aspect_ratio * self.radius
        cs = float(sound_speed) if sound_speed is not None else h * omega
        mdot = self.smbh_accretion_rate
        if density is None:
            sigma = mdot / (3.0 * math.pi * self.alpha * cs * h)
            rho = sigma / (2.0 * h)
        else:
            rho = float(density)
        return DiscState(self.radius, omega, h, cs, rho, mdot)

    def crossing_time(self) -> float:
        """t_cross = atan2(z_m Ω, v_k) / Ω [s]: from the merger to the remnant's arrival at the mid-plane."""
        om = self.disc.omega
        return math.atan2(self.merger_height * om, self.kick_velocity) / om

    def relative_velocity(self) -> float:
        """v_rel = (v_k² + z_m² Ω²)^½ [cm s⁻¹]: the remnant's speed through the disc gas."""
        return math.hypot(self.kick_velocity, self.merger_height * self.disc.omega)

    # ---- accretion, jet, cocoon ---------------------------------------------------------------

    def accretion_rate(self) -> float:
        """Bondi–Hoyle–Lyttleton Ṁ = 4π G² M_bh² ρ / (v_rel² + c_s²)^{3/2} [g s⁻¹]."""
        d = self.disc
        v2 = self.relative_velocity() ** 2 + d.sound_speed**2
        return 4.0 * math.pi * G**2 * self.remnant_mass**2 * d.density / v2**1.5

    def jet_power(self) -> float:
        """L_j = η_j Ṁ c² [erg s⁻¹]."""
        return self.jet_efficiency * self.accretion_rate() * C**2

    def breakout_time(self) -> float:
        """t_b = (ρ H⁵ / L_j)^{1/3} [s]: when the cocoon radius (L_j t³/ρ)^{1/5} reaches H."""
        d = self.disc
        return (d.density * d.scale_height**5 / self.jet_power()) ** (1.0 / 3.0)

    def cocoon_velocity(self) -> float:
        """v_c = 3H / (5 t_b) [cm s⁻¹]: the cocoon's expansion speed at breakout."""
        return 0.6 * self.disc.scale_height / self.breakout_time()

    def cocoon_energy(self) -> float:
        """E_c = L_j t_b [erg]."""
        return self.jet_power() * self.breakout_time()

    def ejecta_mass(self) -> float:
        """M_ej = (4π/3) ρ H³ [g]: the disc gas swept up by the cocoon at breakout."""
        d = self.disc
        return 4.0 * math.pi / 3.0 * d.density * d.scale_height**3

    def ejecta_velocity(self) -> float:
        """v_ej = (E_c / M_ej)^½ [cm s⁻¹] (half of E_c kinetic: ½ M_ej v_ej² = E_c / 2)."""
        return math.sqrt(self.cocoon_energy() / self.ejecta_mass())

    def initial_energy(self) -> float:
        """E₀ = E_c / 2 [erg]: the thermal (radiation) energy of the ejecta at t₀."""
        return 0.5 * self.cocoon_energy()

    def initial_time(self) -> float:
        """t₀ = H / v_ej [s] on the homologous clock (R = v_ej t)."""
        return self.disc.scale_height / self.ejecta_velocity()

    def diffusion_time(self) -> float:
        """t_d = (2 κ M_ej / (β c v_ej))^½ [s]."""
        return math.sqrt(2.0 * self.opacity * self.ejecta_mass() / (self.beta * C * self.ejecta_velocity()))

    def flare_delay(self) -> float:
        """t_delay = t_cross + t_b [s]: from the GW to the cocoon's emergence (the flare's start)."""
        return self.crossing_time() + self.breakout_time()

    def flare_duration(self) -> float:
        """(t₀² + 2 ln 2 · t_d²)^½ − t₀ [s]: until L falls to half its value at the start."""
        t0, td = self.initial_time(), self.diffusion_time()
        return math.sqrt(t0**2 + 2.0 * math.log(2.0) * td**2) - t0

    # ---- light curve --------------------------------------------------------------------------

    def _homologous(self, t: ArrayLike) -> tuple[Array, Array]:
        """(t_hom, emitting mask) for times t [s] after the merger."""
        t = np.asarray(t, dtype=np.float64)
        t_hom = t - self.flare_delay() + self.initial_time()
        return t_hom, t_hom >= self.initial_time()

    def luminosity(self, t: ArrayLike) -> Array:
        """Closed form L = (E₀ t₀ / t_d²) exp(−(t_hom² − t₀²) / (2 t_d²)) [erg s⁻¹] at times t [s] after
        the merger (0 before the flare starts)."""
        t_hom, on = self._homologous(t)
        t0, td = self.initial_time(), self.diffusion_time()
        lum = self.initial_energy() * t0 / td**2 * np.exp(-(t_hom**2 - t0**2) / (2.0 * td**2))
        return np.where(on, lum, 0.0)

    def solve_ode(self, t_end: float, steps: int = 4000) -> OdeSolution:
        """Integrate dE/dt = −E/t − L, L = E t / t_d², from E(t₀) = E₀ with classic RK4 on a uniform grid
        of the homologous clock t ∈ [t₀, t_end] [s], together with the cumulative radiated energy
        dW_rad/dt = L and adiabatic loss dW_ad/dt = E/t (so E + W_rad + W_ad = E₀ throughout)."""
        t0, td = self.initial_time(), self.diffusion_time()
        t_end = _check("t_end", t_end, low=t0)
        steps = int(_check("steps", steps))
        inv_td2 = 1.0 / td**2

        def rhs(tt: float, y: Array) -> Array:
            lum, adiabatic = y[0] * tt * inv_td2, y[0] / tt
            return np.array([-adiabatic - lum, lum, adiabatic])

        ts = np.linspace(t0, t_end, steps + 1)
        ys = np.empty((steps + 1, 3))
        ys[0] = y = np.array([self.initial_energy(), 0.0, 0.0])
        for k in range(steps):
            tk, h = ts[k], ts[k + 1] - ts[k]
            k1 = rhs(tk, y)
            k2 = rhs(tk + h / 2, y + h / 2 * k1)
            k3 = rhs(tk + h / 2, y + h / 2 * k2)
            k4 = rhs(tk + h, y + h * k3)
            y = y + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
            ys[k + 1] = y
        energy = ys[:, 0]
        return OdeSolution(ts, energy, energy * ts * inv_td2, ys[:, 1], ys[:, 2])

    def luminosity_ode(self, t: ArrayLike, steps: int = 4000) -> Array:
        """L [erg s⁻¹] at times t [s] after the merger from :meth:`solve_ode` (linear interpolation in
        log L between RK4 nodes; 0 before the flare starts)."""
        t_hom, on = self._homologous(t)
        t0 = self.initial_time()
        t_end = max(float(np.max(t_hom, initial=t0)), t0 * (1 + 1e-9))
        sol = self.solve_ode(t_end, steps)
        ts, lum = sol.time, sol.luminosity
        out = np.exp(np.interp(np.clip(t_hom, t0, t_end), ts, np.log(lum)))
        return np.where(on, out, 0.0)

    def radiated_energy(self) -> float:
        """∫_{t₀}^∞ L dt = (E₀ t₀ / t_d)(π/2)^½ exp(t₀²/(2t_d²)) erfc(t₀/(√2 t_d)) [erg]; the rest of E₀
        goes into adiabatic expansion, ∫ E/t dt."""
        t0, td = self.initial_time(), self.diffusion_time()
        a = t0 / (math.sqrt(2.0) * td)
        # erfcx(a) = exp(a²) erfc(a); for a ≥ 25 its asymptotic series (error < 1e-10 relative)
        if a < 25.0:
            scaled = math.exp(a * a) * math.erfc(a)
        else:
            inv = 1.0 / (2.0 * a * a)
            scaled = (1.0 - inv + 3.0 * inv**2 - 15.0 * inv**3) / (a * math.sqrt(math.pi))
        return self.initial_energy() * t0 / td * math.sqrt(math.pi / 2.0) * scaled

    def photosphere_radius(self, t: ArrayLike) -> Array:
        """R_ph = v_ej t_hom [cm] (0 before the flare starts)."""
        t_hom, on = self._homologous(t)
        return np.where(on, self.ejecta_velocity() * t_hom, 0.0)

    def temperature(self, t: ArrayLike) -> Array:
        """Blackbody T = (L / (4π R_ph² σ_SB))^{1/4} [K] (0 before the flare starts)."""
        lum = self.luminosity(t)
        r = self.photosphere_radius(t)
        _, on = self._homologous(t)
        safe_r = np.where(on, r, 1.0)
        return np.where(on, (lum / (4.0 * math.pi * safe_r**2 * SIGMA_SB)) ** 0.25, 0.0)

    def band_luminosity(self, t: ArrayLike, band: str | tuple[float, float] = "optical") -> Array:
        """L_band = L · f_band(T) [erg s⁻¹] at times t [s] after the merger."""
        return self.luminosity(t) * band_fraction(self.temperature(t), band)

    # ---- the AGN background -------------------------------------------------------------------

    def agn_band_luminosity(self, band: str | tuple[float, float] = "optical", panels: int = 64) -> float:
        """Band luminosity of the SMBH's standard thin disc [erg s⁻¹] (both faces, r_in = 6 R_g to ∞):
        ∫ 4π r σT⁴ f_band(T) dr = (3 G M_• Ṁ_• / r_in) ∫_0^1 y(1 − y) f_band(T(y)) dy with
        y = (r_in/r)^½ and σT⁴ = (3 G M_• Ṁ_• / (8π r³))(1 − y). Over all wavelengths it is λ L_Edd."""
        lo, hi = _band(band)
        panels = int(_check("panels", panels))
        x, w = np.polynomial.legendre.leggauss(8)  # 8-point Gauss–Legendre on each of `panels` panels
        edges = np.linspace(0.0, 1.0, panels + 1)
        half = 0.5 * np.diff(edges)[:, None]
        y = ((edges[:-1, None] + half) + half * x[None, :]).ravel()
        w = (half * w[None, :]).ravel()
        r_in = DISC_INNER_EDGE * self.gravitational_radius
        gmm = G * self.smbh_mass * self.smbh_accretion_rate
        r = r_in / y**2
        temp = (3.0 * gmm / (8.0 * math.pi * r**3) * (1.0 - y) / SIGMA_SB) ** 0.25
        frac = band_fraction(temp, (lo, hi))
        return float(3.0 * gmm / r_in * np.sum(w * y * (1.0 - y) * frac))

    def summary(self) -> dict[str, float]:
        """The model's headline numbers, cgs (and ``*_days`` in days)."""
        t_peak = self.flare_delay()
        return {
            "density": self.disc.density,
            "sound_speed": self.disc.sound_speed,
            "scale_height": self.disc.scale_height,
            "relative_velocity": self.relative_velocity(),
            "accretion_rate": self.accretion_rate(),
            "jet_power": self.jet_power(),
            "breakout_time": self.breakout_time(),
            "cocoon_velocity": self.cocoon_velocity(),
            "cocoon_energy": self.cocoon_energy(),
            "ejecta_mass": self.ejecta_mass(),
            "ejecta_velocity": self.ejecta_velocity(),
            "diffusion_time": self.diffusion_time(),
            "peak_luminosity": float(self.luminosity(t_peak)),
            "peak_temperature": float(self.temperature(t_peak)),
            "peak_optical_luminosity": float(self.band_luminosity(t_peak, "optical")),
            "agn_optical_luminosity": self.agn_band_luminosity("optical"),
            "delay_days": self.flare_delay() / DAY,
            "duration_days": self.flare_duration() / DAY,
        }


def cocoon_flare_model(**config: Any) -> CocoonFlareModel:
    """Build a :class:`CocoonFlareModel` (keyword arguments and units as documented there)."""
    return CocoonFlareModel(**config)


cocoon_flare = Method(
    name="cocoon_flare",
    kind="model",
    paper=PAPER,
    summary="Flare of a kicked BBH remnant's jet cocoon breaking out of an AGN disc, diffusion light curve",
    fn=cocoon_flare_model,
    extras={"planck_band_integral": planck_band_integral, "band_fraction": band_fraction},
)
