"""The drivable map the scorer reads: typed polygons with fast point and box queries (NAVSIM's PDMDrivableMap)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import Enum

import numpy as np
import shapely

from navsim_eval.errors import InvalidSceneError


class MapLayer(Enum):
    """Polygon layers of a drivable map (nuPlan semantic map layers)."""

    ROADBLOCK = "ROADBLOCK"
    ROADBLOCK_CONNECTOR = "ROADBLOCK_CONNECTOR"
    LANE = "LANE"
    LANE_CONNECTOR = "LANE_CONNECTOR"
    INTERSECTION = "INTERSECTION"
    CARPARK_AREA = "CARPARK_AREA"
    DRIVABLE_AREA = "DRIVABLE_AREA"


# Polygons whose union is the drivable area for DAC (lanes and connectors are inside roadblocks already).
DRIVABLE_LAYERS = (MapLayer.ROADBLOCK, MapLayer.INTERSECTION, MapLayer.DRIVABLE_AREA, MapLayer.CARPARK_AREA)
LANE_LAYERS = (MapLayer.LANE, MapLayer.LANE_CONNECTOR)


class DrivableMap:
    """Typed polygons in a fixed order, with an STRtree for spatial queries.

    ``points_in_polygons`` follows shapely's ``contains`` semantics: a point on a polygon's boundary is *not* inside,
    exactly like the official ``shapely.vectorized.contains`` call.
    """

    def __init__(self, tokens: Sequence[str], layers: Sequence[MapLayer], polygons: Sequence[shapely.Polygon]):
        if not (len(tokens) == len(layers) == len(polygons)):
            raise InvalidSceneError(
                f"drivable map: {len(tokens)} tokens, {len(layers)} layers and {len(polygons)} polygons must match"
            )
        if len(tokens) == 0:
            raise InvalidSceneError("drivable map is empty: expected at least one ROADBLOCK or INTERSECTION polygon")
        self.tokens = list(tokens)
        self.layers = list(layers)
        self.polygons = np.asarray(list(polygons), dtype=object)
        for token, polygon in zip(self.tokens, self.polygons, strict=True):
            if not isinstance(polygon, shapely.Polygon) or polygon.is_empty:
                raise InvalidSceneError(f"drivable map polygon {token!r} is not a non-empty shapely Polygon")
        shapely.prepare(self.polygons)
        self._layer_codes = np.array([list(MapLayer).index(layer) for layer in self.layers], dtype=np.int8)
        self._token_index = {token: i for i, token in enumerate(self.tokens)}
        self._tree = shapely.STRtree(self.polygons)
        self._bounds = shapely.bounds(self.polygons)
        self._layer_masks: dict[tuple[MapLayer, ...], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def from_rings(cls, items: Iterable[tuple[str, MapLayer | str, np.ndarray]]) -> DrivableMap:
        """Build from (token, layer, exterior ring [M, 2]) triples."""
        tokens, layers, polygons = [], [], []
        for token, layer, ring in items:
            ring = np.asarray(ring, dtype=np.float64)
            if ring.ndim != 2 or ring.shape[1] != 2 or len(ring) < 3 or not np.all(np.isfinite(ring)):
                raise InvalidSceneError(f"map polygon {token!r}: expected a finite exterior ring [M>=3, 2]")
            tokens.append(str(token))
            layers.append(layer if isinstance(layer, MapLayer) else _parse_layer(layer, token))
            polygons.append(shapely.Polygon(ring))
        return cls(tokens, layers, polygons)

    def layer_mask(self, layers: Iterable[MapLayer]) -> np.ndarray:
        """Boolean mask over polygons whose layer is one of ``layers`` (memoised: the scorer asks every call)."""
        key = tuple(layers)
        mask = self._layer_masks.get(key)
        if mask is None:
            mask = np.isin(self._layer_codes, [list(MapLayer).index(layer) for layer in key])
            mask.flags.writeable = False
            self._layer_masks[key] = mask
        return mask

    def token_mask(self, tokens: Iterable[str]) -> np.ndarray:
        mask = np.zeros(len(self), dtype=bool)
        for token in tokens:
            index = self._token_index.get(token)
            if index is not None:
                mask[index] = True
        return mask

    def polygon(self, token: str) -> shapely.Polygon:
        try:
            return self.polygons[self._token_index[token]]
        except KeyError:
            raise KeyError(f"no polygon with token {token!r} in the drivable map") from None

    def points_in_polygons(self, points: np.ndarray, polygon_mask: np.ndarray | None = None) -> np.ndarray:
        """Whether each point [P, 2] lies strictly inside each polygon: bool [n_polygons, P].

        Only polygons selected by ``polygon_mask`` and whose bounding box overlaps the points are tested;
        the others are reported as not containing any point.
        """
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        result = np.zeros((len(self), len(points)), dtype=bool)
        if len(points) == 0:
            return result
        lo, hi = points.min(axis=0), points.max(axis=0)
        overlap = (
            (self._bounds[:, 0] <= hi[0])
            & (self._bounds[:, 2] >= lo[0])
            & (self._bounds[:, 1] <= hi[1])
            & (self._bounds[:, 3] >= lo[1])
        )
        if polygon_mask is not None:
            overlap &= polygon_mask
        x, y = points[:, 0], points[:, 1]
        for index in np.flatnonzero(overlap):
            result[index] = shapely.contains_xy(self.polygons[index], x, y)
        return result

    def is_in_layer(self, points: np.ndarray, layers: Iterable[MapLayer]) -> np.ndarray:
        """Whether each point [P, 2] lies strictly inside some polygon of the given layers: bool [P]."""
        return self.points_in_polygons(points, self.layer_mask(layers)).any(axis=0)


def _parse_layer(name: str, token: str) -> MapLayer:
    try:
        return MapLayer(str(name).upper())
    except ValueError:
        raise InvalidSceneError(
            f"map polygon {token!r}: unknown layer {name!r}; expected one of {[m.value for m in MapLayer]}"
        ) from None
