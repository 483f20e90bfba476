"""The 11-float ego state layout shared by the simulator and the metrics (nuPlan's ``StateIndex``)."""

from __future__ import annotations

from enum import IntEnum


class StateIndex(IntEnum):
    """Columns of an ego state array: rear-axle pose, body-frame velocity / acceleration, steering, yaw rates."""

    X = 0
    Y = 1
    HEADING = 2
    VELOCITY_X = 3
    VELOCITY_Y = 4
    ACCELERATION_X = 5
    ACCELERATION_Y = 6
    STEERING_ANGLE = 7
    STEERING_RATE = 8
    ANGULAR_VELOCITY = 9
    ANGULAR_ACCELERATION = 10


STATE_SIZE = len(StateIndex)
