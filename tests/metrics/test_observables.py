import numpy as np
import pytest

from qcdtool.plugins.metrics.common import observables
from qcdtool.plugins.metrics.common.grid import PixelGrid
from qcdtool.plugins.metrics.common.observables import (
    angularities,
    girth,
    image_observables,
    intensity_fractions,
    jet_mass,
    pixel_multiplicity,
    pt_dispersion,
    radial_profile,
)

# 3x3 pixels of width 0.25 with centres at -0.25, 0 and 0.25 on both axes
# (exact in binary, so that the expected values below are exact too).
GRID = PixelGrid.from_extents(((-0.375, 0.375), (-0.375, 0.375)), 3, 3)
R = 0.5


def image_with(*pixels: tuple[int, int, float]) -> np.ndarray:
    """One 1-channel 3x3 image with the given (row, column, intensity) pixels."""
    image = np.zeros((1, 1, 3, 3), dtype=np.float32)
    for row, column, intensity in pixels:
        image[0, 0, row, column] = intensity
    return image


CENTRE = image_with((1, 1, 1.0))
RIGHT = image_with((1, 2, 1.0))
LEFT_RIGHT = image_with((1, 0, 0.5), (1, 2, 0.5))
TOP_BOTTOM = image_with((0, 1, 0.5), (2, 1, 0.5))


def test_grid_centres_exact() -> None:
    np.testing.assert_array_equal(GRID.u, [-0.25, 0.0, 0.25])


def test_multiplicity_one_pixel() -> None:
    assert pixel_multiplicity(CENTRE)[0, 0] == 1


def test_multiplicity_threshold() -> None:
    image = image_with((0, 0, 0.1), (0, 1, 0.5), (2, 2, 0.2))
    assert pixel_multiplicity(image, threshold=0.2)[0, 0] == 1


def test_mass_one_pixel() -> None:
    assert jet_mass(RIGHT, GRID)[0, 0] == pytest.approx(0.0, abs=1e-15)


def test_mass_centre_pixel() -> None:
    assert jet_mass(CENTRE, GRID)[0, 0] == 0.0


def test_mass_corner_pixel() -> None:
    assert jet_mass(image_with((0, 0, 3.0)), GRID)[0, 0] == pytest.approx(0.0, abs=1e-14)


def test_mass_matches_direct_formula() -> None:
    rng = np.random.default_rng(3)
    image = rng.random((1, 1, 3, 3))
    uu, vv = GRID.mesh()
    pt = image[0, 0]
    e = np.sum(pt * np.cosh(uu))
    px, py, pz = np.sum(pt * np.cos(vv)), np.sum(pt * np.sin(vv)), np.sum(pt * np.sinh(uu))
    expected = np.sqrt(e * e - px * px - py * py - pz * pz)
    assert jet_mass(image, GRID)[0, 0] == pytest.approx(expected, rel=1e-9)


def test_mass_two_pixels_in_azimuth() -> None:
    # p = 0.5 (cos v, +-sin v, 0, 1) each: E = 1, px = cos v, so m = sin v.
    assert jet_mass(LEFT_RIGHT, GRID)[0, 0] == pytest.approx(np.sin(0.25), rel=1e-12)


def test_mass_two_pixels_in_rapidity() -> None:
    # p = 0.5 (1, 0, +-sinh u, cosh u) each: E = cosh u, px = 1, so m = sinh u.
    assert jet_mass(TOP_BOTTOM, GRID)[0, 0] == pytest.approx(np.sinh(0.25), rel=1e-12)


def test_mass_scale_per_image() -> None:
    images = np.concatenate([LEFT_RIGHT, LEFT_RIGHT])
    mass = jet_mass(images, GRID, scale=np.array([1.0, 40.0]))
    assert mass[1, 0] == pytest.approx(40.0 * np.sin(0.25), rel=1e-12)


def test_mass_uses_raw_intensity() -> None:
    assert jet_mass(2.0 * LEFT_RIGHT, GRID)[0, 0] == pytest.approx(2.0 * np.sin(0.25), rel=1e-12)


def test_girth_centre_pixel() -> None:
    assert girth(CENTRE, GRID)[0, 0] == 0.0


def test_girth_off_centre_pixel() -> None:
    assert girth(RIGHT, GRID)[0, 0] == 0.25


def test_girth_two_pixels() -> None:
    assert girth(LEFT_RIGHT, GRID)[0, 0] == 0.25


def test_girth_corner_pixel() -> None:
    assert girth(image_with((0, 0, 3.0)), GRID)[0, 0] == pytest.approx(0.25 * np.sqrt(2.0), rel=1e-15)


def test_pt_dispersion_one_pixel() -> None:
    assert pt_dispersion(RIGHT)[0, 0] == 1.0


def test_pt_dispersion_two_equal_pixels() -> None:
    assert pt_dispersion(LEFT_RIGHT)[0, 0] == pytest.approx(np.sqrt(0.5), rel=1e-15)


def test_pt_dispersion_unequal_pixels() -> None:
    image = image_with((0, 0, 1.0), (2, 2, 3.0))
    assert pt_dispersion(image)[0, 0] == pytest.approx(np.sqrt(0.625), rel=1e-15)


def test_angularities_off_centre_pixel() -> None:
    # r / R = 0.25 / 0.5 = 0.5, so lambda_beta = 0.5^beta.
    values = angularities(RIGHT, GRID, radius=R, betas=(0.5, 1.0, 2.0))
    np.testing.assert_allclose(values[0, 0], [np.sqrt(0.5), 0.5, 0.25], rtol=1e-15)


def test_angularities_centre_pixel() -> None:
    values = angularities(CENTRE, GRID, radius=R)
    np.testing.assert_array_equal(values[0, 0], [0.0, 0.0, 0.0])


def test_angularities_mixed_pixels() -> None:
    # z = 1/4 at r = 0, z = 3/4 at r = 0.25: lambda_1 = 3/4 * 1/2.
    image = image_with((1, 1, 1.0), (0, 1, 3.0))
    assert angularities(image, GRID, radius=R, betas=(1.0,))[0, 0, 0] == 0.375


def test_radial_profile_uniform_image() -> None:
    # Centre at r = 0, edges at r = 0.25, corners at r = 0.354.
    image = np.ones((1, 1, 3, 3))
    profile = radial_profile(image, GRID, edges=[0.0, 0.1, 0.3, 0.5])
    np.testing.assert_allclose(profile[0, 0], [1 / 9, 4 / 9, 4 / 9], rtol=1e-15)


def test_radial_profile_drops_outside() -> None:
    image = np.ones((1, 1, 3, 3))
    profile = radial_profile(image, GRID, edges=[0.0, 0.3])
    assert profile[0, 0, 0] == pytest.approx(5 / 9, rel=1e-15)


def test_negative_pixels_count_as_zero() -> None:
    image = image_with((1, 2, 1.0), (0, 0, -0.5))
    assert girth(image, GRID)[0, 0] == 0.25


def test_empty_image_gives_zeros() -> None:
    values = image_observables(np.zeros((1, 1, 3, 3)), GRID, radius=R, edges=[0.0, 0.5])
    for name, value in values.items():
        assert np.all(value == 0.0), name


def test_fractions_sum_to_one() -> None:
    images = np.random.default_rng(1).random((4, 2, 3, 3))
    np.testing.assert_allclose(intensity_fractions(images).sum(axis=(2, 3)), 1.0, rtol=1e-12)


def test_channels_are_separate() -> None:
    images = np.concatenate([CENTRE, RIGHT], axis=1)
    np.testing.assert_array_equal(girth(images, GRID), [[0.0, 0.25]])


def test_combined_matches_single(monkeypatch: pytest.MonkeyPatch) -> None:
    # A chunk size that does not divide n exercises the chunk boundaries.
    monkeypatch.setattr(observables, "CHUNK_SIZE", 3)
    rng = np.random.default_rng(7)
    images = (rng.random((10, 2, 3, 3)) * (rng.random((10, 2, 3, 3)) > 0.5)).astype(np.float32)
    scale = rng.uniform(10.0, 50.0, size=10)
    edges = [0.0, 0.1, 0.3, 0.5]
    combined = image_observables(images, GRID, radius=R, threshold=0.2, edges=edges, scale=scale)
    lambdas = angularities(images, GRID, radius=R)
    expected = {
        "multiplicity": pixel_multiplicity(images, threshold=0.2),
        "mass": jet_mass(images, GRID, scale=scale),
        "girth": girth(images, GRID),
        "pt_dispersion": pt_dispersion(images),
        "lambda_0.5": lambdas[..., 0],
        "lambda_1": lambdas[..., 1],
        "lambda_2": lambdas[..., 2],
        "radial_profile": radial_profile(images, GRID, edges),
    }
    assert sorted(combined) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(combined[name], value, rtol=1e-12, err_msg=name)


def test_grid_mismatch_rejected() -> None:
    with pytest.raises(ValueError, match="grid"):
        girth(np.zeros((1, 1, 4, 4)), GRID)


def test_three_dimensional_images_rejected() -> None:
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        pt_dispersion(np.zeros((1, 3, 3)))
