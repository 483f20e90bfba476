"""Ego vehicle geometry: the nuPlan Chrysler Pacifica that every NAVSIM score is computed with."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VehicleParameters:
    """Rigid-body dimensions of the ego, measured from the rear axle (the reference point of every ego pose)."""

    width: float
    front_length: float  # rear axle to front bumper
    rear_length: float  # rear axle to rear bumper
    wheel_base: float
    cog_position_from_rear_axle: float
    height: float

    @property
    def length(self) -> float:
        return self.front_length + self.rear_length

    @property
    def half_width(self) -> float:
        return self.width / 2.0

    @property
    def half_length(self) -> float:
        return self.length / 2.0

    @property
    def rear_axle_to_center(self) -> float:
        """Distance along the heading from the rear axle to the geometric centre of the box."""
        return self.half_length - self.rear_length


PACIFICA = VehicleParameters(
    width=1.1485 * 2.0,
    front_length=4.049,
    rear_length=1.127,
    wheel_base=3.089,
    cog_position_from_rear_axle=1.67,
    height=1.777,
)
