import numpy as np
import pytest

from qcdtool.core.contracts import ImageDescription
from qcdtool.plugins.metrics.common.grid import PixelGrid


def test_from_extents_centres() -> None:
    grid = PixelGrid.from_extents(((-1.0, 1.0), (-2.0, 2.0)), 2, 4)
    np.testing.assert_array_equal(grid.u, [-0.5, 0.5])
    np.testing.assert_array_equal(grid.v, [-1.5, -0.5, 0.5, 1.5])


def test_from_extents_pixel_size() -> None:
    grid = PixelGrid.from_extents(((-1.0, 1.0), (-2.0, 2.0)), 2, 4)
    assert grid.du == 1.0
    assert grid.dv == 1.0


def test_from_description_shape() -> None:
    description = ImageDescription(
        axes=("eta", "phi"),
        extents=((-0.8, 0.8), (-0.4, 0.4)),
        units="rad",
        intensity="pt fraction",
        channels=("pt",),
        shape=(1, 16, 8),
    )
    grid = PixelGrid.from_description(description)
    assert grid.shape == (16, 8)
    assert grid.du == pytest.approx(0.1)
    assert grid.dv == pytest.approx(0.1)


def test_points_follow_ravel_order() -> None:
    grid = PixelGrid.from_extents(((0.0, 2.0), (0.0, 3.0)), 2, 3)
    image = np.arange(6.0).reshape(2, 3)
    points = grid.points()
    # Pixel (row 1, column 2) is element 5 of the raveled image.
    assert image.ravel()[5] == image[1, 2]
    np.testing.assert_array_equal(points[5], [1.5, 2.5])


def test_radius_of_centre_pixel() -> None:
    grid = PixelGrid.from_extents(((-0.3, 0.3), (-0.3, 0.3)), 3, 3)
    assert grid.radius()[1, 1] == pytest.approx(0.0, abs=1e-15)


def test_from_extents_rejects_reversed() -> None:
    with pytest.raises(ValueError, match="upper edge"):
        PixelGrid.from_extents(((1.0, -1.0), (-1.0, 1.0)), 2, 2)
