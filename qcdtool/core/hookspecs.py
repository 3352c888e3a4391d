"""The hooks through which plugin packages hand their plugins to qcdtool.

A plugin package declares an entry point in the ``qcdtool`` group that names
a module; that module implements one or more of these hooks, decorated with
:data:`hookimpl`::

    from qcdtool.core.hookspecs import hookimpl

    @hookimpl
    def register_imagers(register):
        register(MyImager)

qcdtool's own plugins are registered the same way, through the entry points
of its own ``pyproject.toml``.
"""

from __future__ import annotations

import pluggy

from qcdtool.core.contracts import Register

PROJECT_NAME = "qcdtool"
ENTRY_POINT_GROUP = "qcdtool"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_generators(register: Register) -> None:
    """Register generator plugins: call ``register(cls)`` once per class.

    Each class subclasses :class:`qcdtool.core.contracts.Generator`.
    Implemented by packages that produce parton- and hadron-level events.
    The return value is ignored.
    """


@hookspec
def register_imagers(register: Register) -> None:
    """Register imager plugins: call ``register(cls)`` once per class.

    Each class subclasses :class:`qcdtool.core.contracts.Imager`.
    Implemented by packages that turn jets or events into images.
    The return value is ignored.
    """


@hookspec
def register_models(register: Register) -> None:
    """Register model plugins: call ``register(cls)`` once per class.

    Each class subclasses :class:`qcdtool.core.contracts.Model`.
    Implemented by packages that learn the map between parton and hadron
    images. The return value is ignored.
    """


@hookspec
def register_metrics(register: Register) -> None:
    """Register metric plugins: call ``register(cls)`` once per class.

    Each class subclasses :class:`qcdtool.core.contracts.Metric`.
    Implemented by packages that score generated images against the truth.
    The return value is ignored.
    """
