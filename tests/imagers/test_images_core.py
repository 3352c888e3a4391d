"""Tests of the shared pixelization and point transforms in qcdtool.core.images."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from qcdtool.core.images import (
    EDGE_TOLERANCE,
    POINT_CHUNK,
    Axis,
    Points,
    argmax_per_group,
    bin_index,
    centroids,
    charge_channels,
    fractions_of_sum,
    heaviest_quadrant_reflection,
    normalize_images,
    perpendicular_unit_vectors,
    pixel_centers,
    pixelize,
    polar_angles,
    principal_axis_rotation,
    reflect_points,
    rotate_points,
    subtract_centroid,
    symmetric_axis,
)


def points(rows: list[float], cols: list[float], weights: list[float], images: list[int], n: int) -> Points:
    return Points(
        row=np.array(rows, dtype=np.float64),
        col=np.array(cols, dtype=np.float64),
        weight=np.array(weights, dtype=np.float64),
        image=np.array(images, dtype=np.int64),
        n_images=n,
    )


def random_points(n_images: int, per_image: int, seed: int) -> Points:
    rng = np.random.default_rng(seed)
    n = n_images * per_image
    return Points(
        row=rng.normal(0.0, 0.3, n) + 0.1,
        col=rng.normal(0.0, 0.15, n) ** 3 * 10.0,
        weight=rng.exponential(1.0, n),
        image=np.repeat(np.arange(n_images), per_image),
        n_images=n_images,
    )


# --------------------------------------------------------------------------
# Binning rule


def test_bin_interior_edge_goes_up() -> None:
    axis = Axis(-1.0, 1.0, 4)
    assert bin_index([0.0, -0.5, 0.5], axis).tolist() == [2, 1, 3]


def test_bin_lower_window_edge_inside() -> None:
    assert bin_index([-1.0], Axis(-1.0, 1.0, 4)).tolist() == [0]


def test_bin_upper_window_edge_in_last_pixel() -> None:
    assert bin_index([1.0], Axis(-1.0, 1.0, 4)).tolist() == [3]


def test_bin_outside_window_marked() -> None:
    axis = Axis(-1.0, 1.0, 4)
    assert bin_index([-1.001, 1.001, 7.0], axis).tolist() == [-1, -1, -1]


def test_bin_non_finite_marked() -> None:
    axis = Axis(-1.0, 1.0, 4)
    assert bin_index([math.nan, math.inf, -math.inf], axis).tolist() == [-1, -1, -1]


def test_bin_snaps_rounding_noise_onto_edge() -> None:
    axis = Axis(-1.0, 1.0, 4)
    below_zero = np.nextafter(0.0, -1.0)
    within = -0.5 * EDGE_TOLERANCE * axis.width
    assert bin_index([below_zero, within], axis).tolist() == [2, 2]


def test_bin_does_not_snap_beyond_tolerance() -> None:
    axis = Axis(-1.0, 1.0, 4)
    beyond = -2.0 * EDGE_TOLERANCE * axis.width
    assert bin_index([beyond], axis).tolist() == [1]


def test_bin_snaps_onto_window_edge() -> None:
    axis = Axis(-1.0, 1.0, 4)
    assert bin_index([np.nextafter(1.0, 2.0), np.nextafter(-1.0, -2.0)], axis).tolist() == [3, 0]


def test_bin_centre_odd_size() -> None:
    axis = symmetric_axis(0.8, 15)
    assert bin_index([0.0, np.nextafter(0.0, 1.0), np.nextafter(0.0, -1.0)], axis).tolist() == [7, 7, 7]


def test_bin_centre_even_size() -> None:
    axis = symmetric_axis(0.8, 16)
    assert bin_index([0.0, np.nextafter(0.0, 1.0), np.nextafter(0.0, -1.0)], axis).tolist() == [8, 8, 8]


def test_bin_periodic_wraps_both_ends() -> None:
    axis = Axis(-math.pi, math.pi, 5, periodic=True)
    assert bin_index([math.pi, -math.pi, 3 * math.pi / 5 + 0.1], axis).tolist() == [0, 0, 4]


def test_bin_periodic_never_outside() -> None:
    # u = (x + pi) * 5 / (2 pi): 8.07 for x = 7 and -3.07 for x = -7, taken modulo 5.
    axis = Axis(-math.pi, math.pi, 5, periodic=True)
    assert bin_index([7.0, -7.0], axis).tolist() == [3, 1]


def test_pixel_centers_symmetric() -> None:
    np.testing.assert_allclose(pixel_centers(Axis(-1.0, 1.0, 4)), [-0.75, -0.25, 0.25, 0.75])


def test_axis_rejects_empty_window() -> None:
    with pytest.raises(ValueError, match="empty"):
        Axis(1.0, 1.0, 4)


# --------------------------------------------------------------------------
# Pixelization


def test_pixelize_adds_weights_in_pixel() -> None:
    p = points([0.1, 0.2], [0.1, 0.2], [0.25, 0.5], [0, 0], 1)
    images = pixelize(p, Axis(-1.0, 1.0, 4), Axis(-1.0, 1.0, 4)).images
    assert images[0, 0, 2, 2] == np.float32(0.75)


def test_pixelize_output_float32_shape() -> None:
    p = points([0.1], [0.1], [1.0], [1], 3)
    images = pixelize(p, Axis(-1.0, 1.0, 4), Axis(-1.0, 1.0, 5)).images
    assert images.shape == (3, 1, 4, 5)
    assert images.dtype == np.float32


def test_pixelize_drops_outside_weight() -> None:
    p = points([0.1, 1.5, 0.0], [0.1, 0.0, -3.0], [0.5, 0.3, 0.2], [0, 0, 0], 1)
    result = pixelize(p, Axis(-1.0, 1.0, 4), Axis(-1.0, 1.0, 4))
    assert result.images.sum() == np.float32(0.5)
    assert result.dropped_weight[0] == pytest.approx(0.5)
    assert result.dropped_fraction[0] == pytest.approx(0.5)


def test_pixelize_never_clamps_into_edge() -> None:
    p = points([1.01], [0.0], [1.0], [0], 1)
    images = pixelize(p, Axis(-1.0, 1.0, 4), Axis(-1.0, 1.0, 4)).images
    assert images.sum() == 0.0


def test_pixelize_empty_image_zero_fraction() -> None:
    p = points([0.1], [0.1], [1.0], [0], 2)
    result = pixelize(p, Axis(-1.0, 1.0, 4), Axis(-1.0, 1.0, 4))
    assert result.dropped_fraction[1] == 0.0
    assert result.images[1].sum() == 0.0


def test_pixelize_channels() -> None:
    p = Points(
        row=np.array([0.1, 0.1]),
        col=np.array([0.1, 0.1]),
        weight=np.array([0.25, 0.75]),
        image=np.array([0, 0]),
        n_images=1,
        channel=np.array([1, 0]),
        n_channels=2,
    )
    images = pixelize(p, Axis(-1.0, 1.0, 4), Axis(-1.0, 1.0, 4)).images
    assert images[0, 0, 2, 2] == np.float32(0.75)
    assert images[0, 1, 2, 2] == np.float32(0.25)


def test_pixelize_unsorted_points_match_sorted() -> None:
    p = random_points(50, 20, seed=3)
    shuffled = np.random.default_rng(4).permutation(len(p))
    unsorted = Points(
        row=p.row[shuffled],
        col=p.col[shuffled],
        weight=p.weight[shuffled],
        image=p.image[shuffled],
        n_images=50,
    )
    axis = symmetric_axis(1.0, 8)
    whole = pixelize(p, axis, axis).images
    shuffled_images = pixelize(unsorted, axis, axis).images
    np.testing.assert_allclose(shuffled_images, whole, rtol=1e-6, atol=1e-7)


def test_pixelize_across_point_chunks() -> None:
    # More than three chunks of points, some outside the window. Weights are
    # multiples of 2**-10, so float32 sums are exact in any order and equal
    # the float64 sums.
    p = random_points(1000, (3 * POINT_CHUNK) // 1000 + 7, seed=5)
    p = replace(p, weight=np.round(p.weight * 1024.0) / 1024.0)
    axis = symmetric_axis(0.6, 9)
    r, c = bin_index(p.row, axis), bin_index(p.col, axis)
    inside = (r >= 0) & (c >= 0)
    expected = np.zeros((1000, 9, 9))
    np.add.at(expected, (p.image[inside], r[inside], c[inside]), p.weight[inside])
    dropped = np.zeros(1000)
    np.add.at(dropped, p.image[~inside], p.weight[~inside])
    result = pixelize(p, axis, axis)
    assert len(p) > 3 * POINT_CHUNK
    assert np.count_nonzero(~inside) > 100
    np.testing.assert_array_equal(result.images[:, 0], expected.astype(np.float32))
    np.testing.assert_array_equal(result.dropped_weight, dropped)


def test_pixelize_rounding_within_bound() -> None:
    # Weights that float32 cannot hold: each pixel stays within one float32
    # rounding per point of the float64 sum.
    p = random_points(200, 60, seed=6)
    axis = symmetric_axis(0.6, 5)
    r, c = bin_index(p.row, axis), bin_index(p.col, axis)
    inside = (r >= 0) & (c >= 0)
    expected = np.zeros((200, 5, 5))
    np.add.at(expected, (p.image[inside], r[inside], c[inside]), p.weight[inside])
    count = np.zeros((200, 5, 5))
    np.add.at(count, (p.image[inside], r[inside], c[inside]), 1.0)
    images = pixelize(p, axis, axis).images[:, 0]
    bound = count * np.finfo(np.float32).eps * np.maximum(expected, 1e-30)
    assert count.max() >= 10
    assert np.all(np.abs(images - expected) <= bound)


def test_normalize_sums_to_one() -> None:
    images = np.zeros((2, 2, 3, 3), dtype=np.float32)
    images[0, 0, 1, 1] = 0.3
    images[0, 1, 0, 2] = 0.1
    normalized = normalize_images(images)
    assert normalized[0].sum() == pytest.approx(1.0)
    assert normalized[0, 0, 1, 1] == pytest.approx(0.75)


def test_normalize_keeps_empty_image_zero() -> None:
    images = np.zeros((1, 1, 3, 3), dtype=np.float32)
    assert normalize_images(images).sum() == 0.0


def test_fractions_of_sum_per_group() -> None:
    fractions = fractions_of_sum(np.array([1.0, 3.0, 2.0, 0.0]), np.array([0, 0, 1, 2]), 3)
    assert fractions.tolist() == [0.25, 0.75, 1.0, 0.0]


def test_charge_channels_split() -> None:
    channel, names = charge_channels(np.array([1.0, 0.0, -1 / 3], dtype=np.float32), "charged-neutral")
    assert channel.tolist() == [0, 1, 0]
    assert names == ("charged", "neutral")


# --------------------------------------------------------------------------
# Point transforms


def test_centroid_weighted_mean() -> None:
    p = points([1.0, -1.0, 2.0], [0.0, 2.0, 5.0], [3.0, 1.0, 1.0], [0, 0, 1], 2)
    row, col = centroids(p)
    assert row.tolist() == [0.5, 2.0]
    assert col.tolist() == [0.5, 5.0]


def test_subtract_centroid_moves_mean_to_origin() -> None:
    p = subtract_centroid(random_points(10, 7, seed=5))
    row, col = centroids(p)
    np.testing.assert_allclose(row, 0.0, atol=1e-15)
    np.testing.assert_allclose(col, 0.0, atol=1e-15)


def test_rotation_puts_line_on_row_axis() -> None:
    angle = math.radians(30.0)
    r = np.array([0.1, 0.2, 0.6])
    p = points(list(r * math.cos(angle)), list(r * math.sin(angle)), [1.0, 1.0, 1.0], [0, 0, 0], 1)
    rotated = rotate_points(p, principal_axis_rotation(p, 1e-9))
    np.testing.assert_allclose(rotated.row, r, rtol=1e-12)
    np.testing.assert_allclose(rotated.col, 0.0, atol=1e-15)


def test_rotation_third_moment_positive() -> None:
    p = random_points(20, 9, seed=6)
    rotated = rotate_points(p, principal_axis_rotation(p, 1e-9))
    m3 = rotated.sum_per_image(rotated.weight * rotated.row**3)
    assert np.all(m3 > 0.0)


@pytest.mark.parametrize("angle", [0.3, 1.7, math.pi, -2.4])
def test_rotation_invariant_under_turn(angle: float) -> None:
    p = random_points(20, 9, seed=7)
    c, s = math.cos(angle), math.sin(angle)
    turned = Points(
        row=c * p.row - s * p.col,
        col=s * p.row + c * p.col,
        weight=p.weight,
        image=p.image,
        n_images=p.n_images,
    )
    a = rotate_points(p, principal_axis_rotation(p, 1e-9))
    b = rotate_points(turned, principal_axis_rotation(turned, 1e-9))
    np.testing.assert_allclose(b.row, a.row, atol=1e-12)
    np.testing.assert_allclose(b.col, a.col, atol=1e-12)


def test_rotation_undefined_at_origin() -> None:
    p = points([0.0], [0.0], [1.0], [0], 1)
    rotation = principal_axis_rotation(p, 1e-9)
    assert rotation.defined.tolist() == [False]
    assert (rotation.cos[0], rotation.sin[0]) == (1.0, 0.0)


def test_rotation_isotropic_uses_heaviest_point() -> None:
    # Four points on a square have an isotropic tensor; the heaviest sets the axis.
    p = points([0.5, 0.0, -0.5, 0.0], [0.0, 0.5, 0.0, -0.5], [1.0, 1.0, 1.0, 1.0001], [0, 0, 0, 0], 1)
    rotation = principal_axis_rotation(p, 1e-9)
    rotated = rotate_points(p, rotation)
    assert rotated.row[3] == pytest.approx(0.5)


def test_reflection_moves_heaviest_quadrant() -> None:
    p = points([-0.3, 0.2], [-0.4, 0.1], [0.7, 0.3], [0, 0], 1)
    reflected = reflect_points(p, heaviest_quadrant_reflection(p, 1e-9))
    assert (reflected.row[0], reflected.col[0]) == (0.3, 0.4)


@pytest.mark.parametrize(("row_sign", "col_sign"), [(-1.0, 1.0), (1.0, -1.0), (-1.0, -1.0)])
def test_reflection_invariant_under_mirror(row_sign: float, col_sign: float) -> None:
    p = random_points(20, 9, seed=8)
    mirrored = Points(row=row_sign * p.row, col=col_sign * p.col, weight=p.weight, image=p.image, n_images=p.n_images)
    a = reflect_points(p, heaviest_quadrant_reflection(p, 1e-9))
    b = reflect_points(mirrored, heaviest_quadrant_reflection(mirrored, 1e-9))
    np.testing.assert_array_equal(b.row, a.row)
    np.testing.assert_array_equal(b.col, a.col)


def test_reflection_ignores_points_on_axes() -> None:
    p = points([1e-12, 0.2], [-0.5, -0.1], [5.0, 1.0], [0, 0], 1)
    reflection = heaviest_quadrant_reflection(p, 1e-9)
    assert (reflection.row_sign[0], reflection.col_sign[0]) == (1.0, -1.0)


def test_argmax_per_group_first_on_ties() -> None:
    values = np.array([2.0, 5.0, 5.0, 1.0, 3.0])
    group = np.array([0, 0, 0, 1, 1])
    eligible = np.array([True, True, True, True, False])
    assert argmax_per_group(values, group, 3, eligible).tolist() == [1, 3, -1]


# --------------------------------------------------------------------------
# Directions


def test_perpendicular_vectors_orthonormal() -> None:
    rng = np.random.default_rng(9)
    n = rng.normal(size=(20, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    u = perpendicular_unit_vectors(n)
    np.testing.assert_allclose(np.einsum("ij,ij->i", u, n), 0.0, atol=1e-15)
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=1e-15)


def test_polar_angles_known_direction() -> None:
    n = np.array([[0.0, 0.0, 1.0]])
    u = np.array([[1.0, 0.0, 0.0]])
    v = np.array([[0.0, 1.0, 0.0]])
    d = np.array([[0.0, math.sin(0.3), math.cos(0.3)]])
    theta, phi = polar_angles(d, n, u, v)
    assert theta[0] == pytest.approx(0.3, rel=1e-15)
    assert phi[0] == pytest.approx(math.pi / 2, rel=1e-15)
