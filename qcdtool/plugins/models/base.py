"""Parameters and methods that the ``ddpm`` and ``shift-ddpm`` model plugins share, without importing torch.

Both plugins are thin declarations: a parameter model and a method that
builds the network. Training, checkpoints and sampling live in
:mod:`qcdtool.plugins.models.diffusion`, which imports torch. This module
imports that package only inside methods, so that registering the plugins
(``qcdtool plugins list``, spec validation) stays fast and never loads torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from qcdtool.core.contracts import Model, PluginContext, PluginParams, TrainingRun

if TYPE_CHECKING:
    from qcdtool.core.pairs import ImagePairs
    from qcdtool.plugins.models.diffusion.denoisers import Denoiser
    from qcdtool.plugins.models.diffusion.trainer import TrainedModel

#: GroupNorm groups of every network. Every width must be a multiple of it.
NORM_GROUPS = 8

ChannelMultiplier = Annotated[int, Field(ge=1, le=16)]
Level = Annotated[int, Field(ge=0, le=7)]


class DiffusionParams(PluginParams):
    """Parameters common to both diffusion model plugins."""

    direction: Literal["forward", "inverse"] = Field(
        "inverse",
        description="forward: hadron image given the parton image. inverse: parton image given the hadron image.",
    )

    # Diffusion process.
    schedule: Literal["cosine", "linear"] = Field(
        "cosine",
        description=(
            "Noise schedule: cosine (Nichol & Dhariwal 2021, eq. 17) or linear betas from 1e-4 to 0.02 "
            "(Ho et al. 2020, meant for 1000 steps)."
        ),
    )
    timesteps: int = Field(1000, ge=2, le=10000, description="Diffusion steps T. The ddpm sampler runs all of them.")

    # Network.
    base_channels: int = Field(
        32,
        ge=NORM_GROUPS,
        le=512,
        multiple_of=NORM_GROUPS,
        description="Channels of the UNet's first level, a multiple of 8.",
    )
    channel_multipliers: list[ChannelMultiplier] = Field(
        default_factory=lambda: [1, 2, 2],
        min_length=1,
        max_length=6,
        description=(
            "Channels of each UNet level as multiples of base_channels. Each level after the first halves "
            "the resolution."
        ),
    )
    res_blocks: int = Field(2, ge=1, le=8, description="Residual blocks per UNet level on the way down.")
    attention_levels: list[Level] = Field(
        default_factory=list,
        max_length=6,
        description="UNet levels (0 = full resolution) whose residual blocks are followed by self-attention.",
    )
    mid_attention: bool = Field(True, description="Self-attention between the two blocks at the lowest resolution.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout probability inside the UNet's residual blocks.")

    # Optimization.
    training_steps: int = Field(10000, ge=1, le=10_000_000, description="Optimizer steps of one training run.")
    batch_size: int = Field(128, ge=1, le=65536, description="Image pairs per optimizer step.")
    learning_rate: float = Field(
        1e-3,
        gt=0.0,
        le=1.0,
        description=(
            "Peak AdamW learning rate, reached after the warm-up. docs/models.md compares 2e-4, 1e-3 and 2e-3 "
            "on the inverse map."
        ),
    )
    warmup_steps: int = Field(200, ge=0, description="Steps of linear learning-rate warm-up from lr / warmup_steps.")
    lr_decay: Literal["cosine", "constant"] = Field(
        "cosine", description="After the warm-up: cosine decay to zero at training_steps, or a constant rate."
    )
    weight_decay: float = Field(
        0.0, ge=0.0, le=1.0, description="AdamW weight decay of weight matrices and kernels (not biases or norms)."
    )
    gradient_clip: float = Field(
        1.0, ge=0.0, description="Largest total L2 norm of the gradients, above which they are scaled down (0: off)."
    )
    ema_decay: float = Field(
        0.999,
        ge=0.0,
        lt=1.0,
        description="Decay of the exponential moving average of the weights, which sampling uses.",
    )

    # Bookkeeping.
    log_interval: int = Field(
        10, ge=1, description="Steps per line of loss.csv. Each line has the mean loss since the previous one."
    )
    validation_interval: int = Field(500, ge=1, description="Steps between validation losses.")
    validation_pairs: int = Field(
        1024, ge=0, description="Size of the fixed random subset of validation pairs for the validation loss."
    )
    checkpoint_interval: int = Field(
        1000, ge=1, description="Steps between checkpoints. The last step always writes one."
    )

    # Data and devices.
    intensity_transform: Literal["sqrt", "log", "linear"] = Field(
        "sqrt",
        description=(
            "Map of pixel intensities x to the network's range [-1, 1]: sqrt is 2 sqrt(x / s) - 1, log is "
            "2 log(1 + x / (f s)) / log(1 + 1 / f) - 1, linear is 2 x / s - 1, with s the largest training "
            "intensity of each level and channel and f = log_floor."
        ),
    )
    log_floor: float = Field(
        1e-3,
        gt=0.0,
        le=1.0,
        description="Intensity, as a fraction of the largest, below which the log transform is about linear.",
    )
    sample_batch_size: int = Field(1024, ge=1, le=65536, description="Images drawn at a time when sampling.")
    compile: bool = Field(
        False,
        description=(
            "Compile the networks with torch.compile, on cuda only (ignored elsewhere). It takes tens "
            "of seconds per process and pays off for long runs."
        ),
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> DiffusionParams:
        levels = len(self.channel_multipliers)
        outside = [level for level in self.attention_levels if level >= levels]
        if outside:
            raise ValueError(
                f"attention_levels {self.attention_levels} names levels {outside}, but the UNet has levels "
                f"0..{levels - 1} (one per channel multiplier)"
            )
        if self.lr_decay == "cosine" and self.warmup_steps >= self.training_steps:
            raise ValueError(
                f"warmup_steps = {self.warmup_steps} leaves no steps for the cosine decay of "
                f"training_steps = {self.training_steps}; lower warmup_steps or set lr_decay = 'constant'"
            )
        return self


#: Parameters that change neither the weights nor the losses: how often to log,
#: validate and save, how many images to sample at a time, whether to compile.
RUNTIME_PARAMS = frozenset(
    {"sample_batch_size", "compile", "log_interval", "validation_interval", "validation_pairs", "checkpoint_interval"}
)


class DiffusionModel(Model):
    """Training, checkpoints and sampling of a conditional diffusion model, shared by the plugins.

    A subclass sets ``name``, ``summary`` and ``Params`` and builds its
    network in :meth:`build_denoiser`.
    """

    Params: ClassVar[type[PluginParams]] = DiffusionParams
    runtime_params: ClassVar[frozenset[str]] = RUNTIME_PARAMS

    def __init__(self, params: PluginParams, context: PluginContext) -> None:
        super().__init__(params, context)
        self.trained: TrainedModel | None = None

    @property
    def diffusion_params(self) -> DiffusionParams:
        """The parameters, typed."""
        if not isinstance(self.params, DiffusionParams):
            raise TypeError(f"{type(self).__name__} needs DiffusionParams, got {type(self.params).__name__}")
        return self.params

    def build_denoiser(self, condition_shape: tuple[int, int, int], target_shape: tuple[int, int, int]) -> Denoiser:
        """Build the untrained network for images of these (C, H, W) shapes."""
        raise NotImplementedError

    def fit(self, train: ImagePairs, validation: ImagePairs, run: TrainingRun) -> dict[str, float]:
        """Train on ``train``, validate on ``validation``, write loss.csv and checkpoints to ``run.folder``.

        Afterwards the model can sample without :meth:`load`.
        """
        from qcdtool.plugins.models.diffusion.trainer import train_model

        self.trained, summary = train_model(self, train, validation, run)
        return summary

    def load(self, folder: Path, device: str) -> None:
        """Restore the EMA weights and the intensity transform from the checkpoint in ``folder``."""
        from qcdtool.plugins.models.diffusion.trainer import load_trained

        self.trained = load_trained(self, folder, device)

    def sample(
        self,
        conditions: NDArray[np.float32],
        n_per_condition: int,
        sampler: str,
        steps: int | None,
        seed: int,
        device: str,
    ) -> NDArray[np.float32]:
        """Draw ``n_per_condition`` targets per condition: (n, K, C, H, W) float32, intensities >= 0.

        ``ddpm`` runs all T steps and ignores ``steps``. ``ddim`` runs
        ``steps`` steps with eta = 0, or min(50, T) when ``steps`` is None.
        """
        if self.trained is None:
            raise RuntimeError(f"model plugin '{self.name}' has no weights yet; call fit() or load() first")
        from qcdtool.plugins.models.diffusion.sampling import sample_trained

        return sample_trained(self.trained, conditions, n_per_condition, sampler, steps, seed, device)

    def checkpoint_params(self) -> dict[str, Any]:
        """Return the parameters as a checkpoint stores them (plain JSON values)."""
        return self.params.model_dump(mode="json")
