"""The ``shift-ddpm`` model plugin: Shift-DDPM (Zhang, Zhao, Yu, Tian, AAAI 2023, arXiv:2302.02373).

A shift predictor maps the condition image c to an image E(c), and the
diffusion trajectory is moved by k_t E(c):
q(x_t | x_0, c) = N(sqrt(alpha_bar_t) x_0 + k_t E(c), (1 - alpha_bar_t) I).
The schedule k_t is prior-shift, data-normalization or quadratic-shift.
Both networks are trained together with the plain noise-prediction loss.
docs/models.md derives the posterior, the prior and the DDIM update, and
explains the choice of ``condition_input``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from qcdtool.core.contracts import PluginParams, Register
from qcdtool.core.hookspecs import hookimpl
from qcdtool.plugins.models.base import NORM_GROUPS, DiffusionModel, DiffusionParams

if TYPE_CHECKING:
    from qcdtool.plugins.models.diffusion.denoisers import Denoiser


class ShiftDDPMParams(DiffusionParams):
    """Parameters of the ``shift-ddpm`` model: the common ones plus the shift."""

    shift: Literal["prior-shift", "data-normalization", "quadratic-shift"] = Field(
        "prior-shift",
        description=(
            "Shift schedule k_t: prior-shift (1 - sqrt(alpha_bar_t), the prior becomes N(E(c), I)), "
            "data-normalization (-sqrt(alpha_bar_t), diffuses x_0 - E(c)) or quadratic-shift "
            "(sqrt(alpha_bar_t) (1 - sqrt(alpha_bar_t)), zero at both ends)."
        ),
    )
    shift_width: int = Field(
        32,
        ge=NORM_GROUPS,
        le=512,
        multiple_of=NORM_GROUPS,
        description="Channels of the shift predictor E(c), a multiple of 8.",
    )
    shift_depth: int = Field(
        4,
        ge=0,
        le=8,
        description="Dilated residual blocks of the shift predictor, which then sees 3 + 2 * 2**depth pixels across.",
    )
    condition_input: bool = Field(
        False,
        description=(
            "Also give the condition image to the UNet as input channels. The default false is the design of "
            "Zhang et al., in which the condition reaches the denoiser only through the shifted trajectory."
        ),
    )


class ShiftDDPM(DiffusionModel):
    """Shift-DDPM: a learned shift E(c) of the diffusion trajectory and a UNet denoiser."""

    name: ClassVar[str] = "shift-ddpm"
    summary: ClassVar[str] = "Shift-DDPM: conditional diffusion whose trajectory is shifted by a learned image E(c)"
    Params: ClassVar[type[PluginParams]] = ShiftDDPMParams

    def build_denoiser(self, condition_shape: tuple[int, int, int], target_shape: tuple[int, int, int]) -> Denoiser:
        """Build the shift predictor (condition -> target channels) and the UNet."""
        from qcdtool.plugins.models.diffusion.denoisers import ShiftDenoiser, noise_schedule, unet_from_params
        from qcdtool.plugins.models.diffusion.shift_predictor import ShiftPredictor

        params = self.params
        if not isinstance(params, ShiftDDPMParams):
            raise TypeError(f"shift-ddpm needs ShiftDDPMParams, got {type(params).__name__}")
        unet_inputs = target_shape[0] + (condition_shape[0] if params.condition_input else 0)
        return ShiftDenoiser(
            unet=unet_from_params(params, unet_inputs, target_shape[0]),
            shift_predictor=ShiftPredictor(
                condition_shape[0], target_shape[0], width=params.shift_width, depth=params.shift_depth
            ),
            schedule=noise_schedule(params),
            mode=params.shift,
            condition_input=params.condition_input,
        )


@hookimpl
def register_models(register: Register) -> None:
    """Register the shift-ddpm model."""
    register(ShiftDDPM)
