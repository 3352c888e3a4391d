import numpy as np
import pytest

from qcdtool.plugins.metrics.common.emd import emd_to_references, ground_distance, image_emd
from qcdtool.plugins.metrics.common.grid import PixelGrid

# 4 rows of height 0.25 and 5 columns of width 0.5, so that a move by one
# row and a move by one column cost different amounts.
GRID = PixelGrid.from_extents(((-0.5, 0.5), (-1.25, 1.25)), 4, 5)


def image_with(*pixels: tuple[int, int, float]) -> np.ndarray:
    """One 1-channel 4x5 image with the given (row, column, intensity) pixels."""
    image = np.zeros((1, 1, 4, 5))
    for row, column, intensity in pixels:
        image[0, 0, row, column] = intensity
    return image


def sparse_images(rng: np.random.Generator, n: int, channels: int = 1) -> np.ndarray:
    values = rng.random((n, channels, 4, 5))
    return values * (rng.random((n, channels, 4, 5)) < 0.3)


def test_ground_distance_neighbours() -> None:
    cost = ground_distance(GRID)
    assert cost[0, 1] == 0.5
    assert cost[0, 5] == 0.25


def test_ground_distance_symmetric() -> None:
    cost = ground_distance(GRID)
    np.testing.assert_array_equal(cost, cost.T)


def test_image_with_itself_zero() -> None:
    images = sparse_images(np.random.default_rng(0), 5)
    images[:, :, 0, 0] = 1.0
    np.testing.assert_array_equal(image_emd(images, images, GRID).emd, 0.0)


def test_pixel_moved_one_column() -> None:
    result = image_emd(image_with((1, 2, 1.0)), image_with((1, 3, 1.0)), GRID)
    assert result.emd[0, 0] == pytest.approx(GRID.dv, rel=1e-12)


def test_pixel_moved_one_row() -> None:
    result = image_emd(image_with((1, 2, 1.0)), image_with((2, 2, 1.0)), GRID)
    assert result.emd[0, 0] == pytest.approx(GRID.du, rel=1e-12)


def test_pixel_split_in_two() -> None:
    # Half the intensity moves two columns left, half stays: 0.5 * 2 * 0.5.
    result = image_emd(image_with((0, 2, 1.0)), image_with((0, 0, 0.5), (0, 2, 0.5)), GRID)
    assert result.emd[0, 0] == pytest.approx(0.5, rel=1e-12)


def test_total_intensity_reported_apart() -> None:
    result = image_emd(image_with((1, 1, 3.0)), image_with((1, 1, 1.0)), GRID)
    assert result.emd[0, 0] == 0.0
    assert result.intensity_difference[0, 0] == 2.0


def test_empty_against_empty_zero() -> None:
    assert image_emd(np.zeros((1, 1, 4, 5)), np.zeros((1, 1, 4, 5)), GRID).emd[0, 0] == 0.0


def test_empty_against_full_nan() -> None:
    assert np.isnan(image_emd(np.zeros((1, 1, 4, 5)), image_with((0, 0, 1.0)), GRID).emd[0, 0])


def test_negative_pixels_count_as_zero() -> None:
    result = image_emd(image_with((1, 2, 1.0), (3, 4, -0.2)), image_with((1, 2, 1.0)), GRID)
    assert result.emd[0, 0] == 0.0


def test_to_references_matches_pairs() -> None:
    rng = np.random.default_rng(1)
    images = sparse_images(rng, 6, channels=2) + image_with((0, 0, 0.1))
    references = sparse_images(rng, 3, channels=2) + image_with((3, 4, 0.1))
    distances = emd_to_references(images, references, GRID)
    for k in range(3):
        paired = image_emd(images, np.repeat(references[k : k + 1], 6, axis=0), GRID).emd.sum(axis=1)
        np.testing.assert_allclose(distances[:, k], paired, rtol=1e-10, atol=1e-12)


def test_to_references_single_reference() -> None:
    distances = emd_to_references(image_with((1, 2, 1.0)), image_with((1, 3, 1.0)), GRID)
    assert distances[0, 0] == pytest.approx(GRID.dv, rel=1e-12)


def test_to_references_empty_reference_nan() -> None:
    references = np.concatenate([np.zeros((1, 1, 4, 5)), image_with((1, 3, 1.0))])
    distances = emd_to_references(image_with((1, 2, 1.0)), references, GRID)
    assert np.isnan(distances[0, 0])


def test_mismatched_pairs_rejected() -> None:
    with pytest.raises(ValueError, match="images_b"):
        image_emd(np.zeros((2, 1, 4, 5)), np.zeros((3, 1, 4, 5)), GRID)
