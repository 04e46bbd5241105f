"""A ``pickle_module`` for ``torch.save`` that can save quantized models whole.

torch's quantized convolutions (``torch.ao.nn.quantized`` ``_ConvNd``: Conv1d/2d/3d, ConvReLU2d, ...)
pickle only their own fields, so an unpickled one lacks ``nn.Module``'s internals and an FX-quantized
``GraphModule`` containing one cannot be loaded back (``'ConvReLU2d' object has no attribute
'_modules'``). This module pickles them the way their own ``__deepcopy__`` copies them:
``nn.Module.__init__`` first, then ``__setstate__``. Everything else goes through cloudpickle, as
MLflow's own ``mlflow.pytorch.pickle_module`` does; pass this module as ``pickle_module`` to
``torch.save`` or ``mlflow.pytorch.log_model`` (MLflow records it and loads with it).
"""

from __future__ import annotations

from pickle import Unpickler  # noqa: F401  (torch.load needs pickle_module.Unpickler)
from typing import Any

import io
from pickle import load, loads  # noqa: F401  (plain unpickling; the rebuild function is importable)

from cloudpickle import CloudPickler
from torch import nn
from torch.ao.nn.quantized.modules.conv import _ConvNd as _QuantizedConvNd


def _rebuild_quantized_conv(cls: type, state: tuple[Any, ...]) -> nn.Module:
    module = cls.__new__(cls)
    nn.Module.__init__(module)
    module.__setstate__(state)
    return module


class Pickler(CloudPickler):
    """cloudpickle's pickler with a reducer for quantized convolutions."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _QuantizedConvNd):
            return _rebuild_quantized_conv, (type(obj), obj.__getstate__())
        return super().reducer_override(obj)


def dump(obj: Any, file: Any, protocol: int | None = None) -> None:
    """``pickle.dump`` with :class:`Pickler`."""
    Pickler(file, protocol=protocol).dump(obj)


def dumps(obj: Any, protocol: int | None = None) -> bytes:
    """``pickle.dumps`` with :class:`Pickler`."""
    buffer = io.BytesIO()
    dump(obj, buffer, protocol)
    return buffer.getvalue()
