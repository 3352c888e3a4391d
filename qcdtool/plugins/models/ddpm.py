"""The ``ddpm`` model plugin: a conditional DDPM whose network receives the condition image.

The noise predictor eps_theta([x_t, c], t) is a UNet that receives the
condition image c as extra input channels beside the noisy target x_t
(Ho et al. 2020, arXiv:2006.11239, with the condition concatenated to the
input). Training, checkpoints and sampling are shared with ``shift-ddpm``
(:mod:`qcdtool.plugins.models.base`), and docs/models.md describes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from qcdtool.core.contracts import PluginParams, Register
from qcdtool.core.hookspecs import hookimpl
from qcdtool.plugins.models.base import DiffusionModel, DiffusionParams

if TYPE_CHECKING:
    from qcdtool.plugins.models.diffusion.denoisers import Denoiser


class DDPMParams(DiffusionParams):
    """Parameters of the ``ddpm`` model: those common to both diffusion models."""


class DDPM(DiffusionModel):
    """Conditional DDPM with the condition image as extra UNet input channels."""

    name: ClassVar[str] = "ddpm"
    summary: ClassVar[str] = "Conditional DDPM: a UNet denoiser that receives the condition image as input channels"
    Params: ClassVar[type[PluginParams]] = DDPMParams

    def build_denoiser(self, condition_shape: tuple[int, int, int], target_shape: tuple[int, int, int]) -> Denoiser:
        """Build a UNet taking target + condition channels and returning the target's channels."""
        from qcdtool.plugins.models.diffusion.denoisers import ConditionalDenoiser, unet_from_params

        unet = unet_from_params(self.diffusion_params, condition_shape[0] + target_shape[0], target_shape[0])
        return ConditionalDenoiser(unet)


@hookimpl
def register_models(register: Register) -> None:
    """Register the ddpm model."""
    register(DDPM)
