"""The inference knob of every compared policy and how it becomes prediction settings: the one place that maps a
knob value to what ``predict`` is told.

DIPOLE tunes its guidance omega (at ``knobs.omega_temperature``, 0 unless set); every other policy (imitation and the RL
algorithms that train one ``policy`` branch) tunes its sampler temperature, the scale of the initial noise its
deterministic sampler starts from (0: the noise-free plan, 1: as trained). Every evaluation runs the budget's denoising
steps, and every grid has the same size (``ComparePlan.knobs``), so no policy gets more tries; a grid whose best value
is its largest grows past it by the same rule for every policy (``knobs.widen`` values at most, :func:`knob_beyond`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from vla_drive.eval.compare.plan import Algorithm, Budget, Knobs
from vla_drive.eval.sweep import WIDEN_FACTOR


@dataclass(frozen=True)
class PredictionSettings:
    """What one evaluation predicts with: guidance omega (None: the model's own policy), denoising steps and the
    sampler temperature."""

    omega: float | None
    steps: int
    temperature: float = 1.0


def knob_name(algorithm: Algorithm) -> str:
    """``omega`` for DIPOLE, ``temperature`` for the others."""
    return "omega" if algorithm.name == "dipole" else "temperature"


def knob_grid(algorithm: Algorithm, knobs: Knobs) -> tuple[float, ...]:
    """The values of the policy's knob tried on validation, in the order ties are broken (the first wins)."""
    if knob_name(algorithm) == "omega":
        return tuple(float(omega) for omega in knobs.omegas)
    return tuple(float(temperature) for temperature in knobs.temperatures)


def default_knob(algorithm: Algorithm, budget: Budget) -> float:
    """The knob value of training-time validation (omega 0; temperature 1, as trained)."""
    return 0.0 if knob_name(algorithm) == "omega" else 1.0


def knob_beyond(algorithm: Algorithm, tried: Sequence[float]) -> float:
    """The next value past the largest knob tried, for a best value at the top of the grid: omega times 1.6 (1 after
    0), as the guidance sweep widens; a temperature one more step of the grid's last spacing (0.25 without one)."""
    values = sorted(set(tried))
    largest = values[-1]
    if knob_name(algorithm) == "omega":
        return round(largest * WIDEN_FACTOR, 3) if largest > 0 else 1.0
    step = largest - values[-2] if len(values) > 1 else 0.25
    return round(largest + step, 6)


def validation_settings(algorithm: Algorithm, budget: Budget, knobs: Knobs) -> PredictionSettings:
    """What training-time validation predicts with, and so what chooses the checkpoint: the default knob, DIPOLE's
    at the temperature its omegas are swept at."""
    return prediction_settings(algorithm, default_knob(algorithm, budget), budget, knobs)


def prediction_settings(algorithm: Algorithm, knob: float, budget: Budget, knobs: Knobs) -> PredictionSettings:
    """The prediction settings of ``knob`` for ``algorithm`` (DIPOLE's omega at ``knobs.omega_temperature``)."""
    if knob_name(algorithm) == "omega":
        return PredictionSettings(omega=float(knob), steps=budget.sample_steps, temperature=knobs.omega_temperature)
    return PredictionSettings(omega=None, steps=budget.sample_steps, temperature=float(knob))


def knob_mismatch(algorithm: Algorithm, result: Mapping[str, Any], budget: Budget, knobs: Knobs) -> str:
    """How a finished run's ``result.json`` differs from what the plan would predict with ('' when it does not): a
    run swept, tested or validated (its checkpoint chosen) at other settings is not comparable to the plan's other
    runs. Results written before validation recorded its temperature validated at 1."""
    expected = prediction_settings(algorithm, float(result["chosen_knob"]), budget, knobs)
    made = result.get("chosen_settings") or {}
    problems = [
        f"{name} {made.get(name)!r} (the plan: {value!r})"
        for name, value in asdict(expected).items()
        if made.get(name) != value
    ]
    tried = [float(row["knob"]) for row in result.get("grid", [])]
    base = len(knob_grid(algorithm, knobs))
    if tried and float(result["chosen_knob"]) == max(tried) and len(tried) > 1 and len(tried) < base + knobs.widen:
        problems.append(f"its best knob {max(tried):g} the largest of the {len(tried)} tried (the plan widens past it)")
    validated = float(result.get("val_temperature", 1.0))
    wanted = validation_settings(algorithm, budget, knobs).temperature
    if validated != wanted:
        problems.append(f"validation temperature {validated:g} (the plan: {wanted:g})")
    return "; ".join(problems)


def head_calls_per_plan(algorithm: Algorithm, settings: PredictionSettings) -> int:
    """Trajectory-head evaluations per predicted plan: one per denoising step, two where DIPOLE guidance combines
    the pos and neg branches (omega > 0; at omega 0 only the pos branch runs)."""
    guided = algorithm.name == "dipole" and (settings.omega or 0.0) > 0.0
    return settings.steps * (2 if guided else 1)
