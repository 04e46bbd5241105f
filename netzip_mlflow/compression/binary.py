"""Binary layers: the sign with a straight-through estimator, the layers trained with latent float
weights, and the bit-packed layers a binarized model ships with.

* :func:`sign_ste` - forward ``sign(x)`` with ``sign(0) = +1``; backward the straight-through
  estimator with the ``|x| <= 1`` clip (Courbariaux et al. 2016): the gradient passes unchanged
  where ``|x| <= 1`` and is zero elsewhere.
* :class:`BinaryConv2d` / :class:`BinaryLinear` (training) keep *latent* float weights, which the
  optimizer updates and which are clipped to ``[-1, 1]`` before every training forward (larq's
  ``weight_clip``), and compute with ``sign(W)`` (times ``alpha``, the mean ``|W|`` of each output
  channel, with ``scaling``, as XNOR-Net does). With binary activations the layer's input goes through
  :func:`sign_ste` first. With a ``shortcut`` a binary convolution adds its real-valued input to its
  output (Bi-Real Net), the input average-pooled to the output's size and its channels repeated (or
  averaged in groups) to the output's count.
* :class:`PackedBinaryConv2d` / :class:`PackedBinaryLinear` (inference) hold only the packed signs
  (``packed_weight``, uint8, see :mod:`netzip_mlflow.compression.bitpack`), the float ``scale`` per
  output channel (with scaling) and the float bias if any. They unpack the weights once to float32
  (cached, never saved or pickled) and run float kernels: PyTorch has no XNOR/popcount kernels, so a
  binary model is not faster than its float original. They describe their weights to the evaluator
  with ``netzip_layer_tensors()`` and ``netzip_weight_bits = 1``
  (:mod:`netzip_mlflow.evaluation.weights`): 1 bit per weight for CHATS, the dense count for params.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from netzip_mlflow.compression.bitpack import pack_signs, packed_bytes, unpack_signs

#: Bit-width of a binary layer's weights (CHATS counts 1 bit per MAC).
BINARY_BITS = 1


def sign(x: torch.Tensor) -> torch.Tensor:
    """``+1`` where ``x >= 0`` (so sign(0) = +1), ``-1`` elsewhere, in ``x``'s dtype."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return sign(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """:func:`sign` forward; straight-through gradient inside ``[-1, 1]``, zero outside."""
    return _SignSTE.apply(x)


def channel_scale(weight: torch.Tensor) -> torch.Tensor:
    """XNOR-Net's ``alpha``: the mean ``|W|`` of each output channel (dim 0), shaped to broadcast."""
    return weight.abs().mean(dim=tuple(range(1, weight.dim())), keepdim=True)


@dataclass(frozen=True)
class BinaryOptions:
    """How one layer is binarized.

    Attributes:
        scaling: multiply each output channel by ``alpha`` (mean ``|W|`` of its latent weights).
        binary_activations: binarize the layer's input too (``False``: a binary-weight layer).
        shortcut: add the real-valued input to the output (convolutions only; Bi-Real Net).
    """

    scaling: bool
    binary_activations: bool
    shortcut: bool = False

    def as_dict(self) -> dict[str, bool]:
        """The options as a plain dict (stored in the packed file)."""
        return asdict(self)


def shortcut_fits(in_channels: int, out_channels: int) -> bool:
    """Whether a parameter-free shortcut can match the channel counts (one divides the other)."""
    return out_channels % in_channels == 0 or in_channels % out_channels == 0


def add_shortcut(inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """``outputs + inputs``, the inputs average-pooled to the outputs' spatial size and their
    channels repeated (more output channels) or averaged in consecutive groups (fewer)."""
    if inputs.shape[-2:] != outputs.shape[-2:]:
        inputs = F.adaptive_avg_pool2d(inputs, outputs.shape[-2:])
    cin, cout = inputs.shape[1], outputs.shape[1]
    if cout > cin:
        inputs = inputs.repeat(1, cout // cin, 1, 1)
    elif cout < cin:
        inputs = inputs.reshape(inputs.shape[0], cout, cin // cout, *inputs.shape[2:]).mean(dim=2)
    return outputs + inputs


def _conv_forward(layer: Any, x: torch.Tensor, weight: torch.Tensor, act: Any) -> torch.Tensor:
    inputs = act(x) if layer.options.binary_activations else x
    out = F.conv2d(
        inputs, weight, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups
    )
    return add_shortcut(x, out) if layer.options.shortcut else out


def _linear_forward(layer: Any, x: torch.Tensor, weight: torch.Tensor, act: Any) -> torch.Tensor:
    inputs = act(x) if layer.options.binary_activations else x
    return F.linear(inputs, weight, layer.bias)


# ------------------------------------------------------------------------------------ training


class _LatentBinary:
    """Shared by the training layers: binary weights from the latent float ``weight``."""

    weight: nn.Parameter
    options: BinaryOptions
    training: bool

    def training_weight(self) -> torch.Tensor:
        """``sign_ste(W)`` (times ``alpha`` with scaling); clips ``W`` to ``[-1, 1]`` first when
        training, so no latent weight leaves the range where the estimator passes gradients."""
        if self.training:
            with torch.no_grad():
                self.weight.clamp_(-1.0, 1.0)
        binary = sign_ste(self.weight)
        return binary * channel_scale(self.weight) if self.options.scaling else binary


class BinaryConv2d(_LatentBinary, nn.Conv2d):
    """A Conv2d trained as a binary layer (latent float weights; see the module docstring)."""

    def __init__(self, *args: Any, options: BinaryOptions, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.options = options

    @classmethod
    def from_float(cls, conv: nn.Conv2d, options: BinaryOptions) -> BinaryConv2d:
        """A binary copy of ``conv`` whose latent weights start as ``conv``'s float weights; a
        shortcut only if the channel counts divide one another (:func:`shortcut_fits`)."""
        fits = shortcut_fits(conv.in_channels, conv.out_channels)
        options = replace(options, shortcut=options.shortcut and fits)
        layer = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,
            device=conv.weight.device, dtype=conv.weight.dtype, options=options,
        )
        layer.load_state_dict(conv.state_dict())
        return layer.train(conv.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _conv_forward(self, x, self.training_weight(), sign_ste)


class BinaryLinear(_LatentBinary, nn.Linear):
    """A Linear trained as a binary layer (latent float weights; see the module docstring)."""

    def __init__(self, *args: Any, options: BinaryOptions, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.options = options

    @classmethod
    def from_float(cls, linear: nn.Linear, options: BinaryOptions) -> BinaryLinear:
        """A binary copy of ``linear`` whose latent weights start as ``linear``'s float weights
        (never with a shortcut: shortcuts are for convolutions)."""
        layer = cls(
            linear.in_features, linear.out_features, linear.bias is not None,
            device=linear.weight.device, dtype=linear.weight.dtype,
            options=replace(options, shortcut=False),
        )
        layer.load_state_dict(linear.state_dict())
        return layer.train(linear.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _linear_forward(self, x, self.training_weight(), sign_ste)


# ------------------------------------------------------------------------------------- packed


class _PackedBinary(nn.Module):
    """Bit-packed signs, optional float scale per output channel, optional float bias."""

    #: Read by :mod:`netzip_mlflow.evaluation.weights`: the bit-width of this layer's weights.
    netzip_weight_bits = BINARY_BITS
    packed_weight: torch.Tensor
    scale: torch.Tensor | None
    bias: nn.Parameter | None

    def _init_packed(self, weight_shape: tuple[int, ...], bias: bool, options: BinaryOptions) -> None:
        self.weight_shape = tuple(int(s) for s in weight_shape)
        self.options = options
        numel = 1
        for size in self.weight_shape:
            numel *= size
        self.register_buffer("packed_weight", torch.zeros(packed_bytes(numel), dtype=torch.uint8))
        out = self.weight_shape[0]
        self.register_buffer("scale", torch.ones(out) if options.scaling else None)
        if bias:
            self.bias = nn.Parameter(torch.zeros(out))
        else:
            self.register_parameter("bias", None)
        self._cache: tuple[tuple[Any, ...], torch.Tensor] | None = None

    @classmethod
    def from_trained(cls, layer: Any) -> Any:
        """The packed inference layer of a trained :class:`BinaryConv2d` / :class:`BinaryLinear`
        (each subclass's ``like`` builds the empty layer of the right shape)."""
        packed = cls.like(layer, layer.options)  # type: ignore[attr-defined]
        packed._fill(layer)
        return packed

    def _fill(self, trained: _LatentBinary) -> None:
        """Pack the signs (and alpha) of a trained layer's latent weights; copy its bias."""
        with torch.no_grad():
            latent = trained.weight.detach()
            self.packed_weight.copy_(pack_signs(latent))
            if self.scale is not None:
                self.scale.copy_(channel_scale(latent).reshape(-1))
            if self.bias is not None:
                self.bias.copy_(trained.bias.detach())

    def binary_weight(self) -> torch.Tensor:
        """The float weights (``+-1``, or ``+-alpha`` per output channel), unpacked once and cached
        until the packed bytes or the scales change (or move)."""
        key = tuple(
            (t.data_ptr(), t._version, t.device, t.dtype)
            for t in (self.packed_weight, self.scale) if t is not None
        )
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        dtype = self.scale.dtype if self.scale is not None else torch.float32
        with torch.no_grad():
            weight = unpack_signs(self.packed_weight, self.weight_shape, dtype)
            if self.scale is not None:
                weight = weight * self.scale.reshape(-1, *[1] * (weight.dim() - 1))
        self._cache = (key, weight)
        return weight

    def netzip_layer_tensors(self) -> dict[str, torch.Tensor]:
        """The layer's weight (dense, unpacked) and bias, for parameter counts and sparsity."""
        tensors = {"weight": self.binary_weight()}
        if self.bias is not None:
            tensors["bias"] = self.bias
        return tensors

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = None  # the unpacked float weights are never pickled
        return state


class PackedBinaryConv2d(_PackedBinary):
    """Inference form of :class:`BinaryConv2d`: packed signs, float kernels (see module docstring)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int] | str,
        dilation: tuple[int, int],
        groups: int,
        bias: bool,
        options: BinaryOptions,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.padding, self.dilation = (
            tuple(kernel_size), tuple(stride), padding, tuple(dilation)
        )
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self._init_packed(shape, bias, options)

    @classmethod
    def like(cls, conv: nn.Conv2d, options: BinaryOptions) -> PackedBinaryConv2d:
        """An empty (all ``+1``) packed layer with ``conv``'s shape and hyperparameters."""
        return cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            conv.dilation, conv.groups, conv.bias is not None, options,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _conv_forward(self, x, self.binary_weight(), sign)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, {self.options}"
        )


class PackedBinaryLinear(_PackedBinary):
    """Inference form of :class:`BinaryLinear`: packed signs, float kernels."""

    def __init__(self, in_features: int, out_features: int, bias: bool, options: BinaryOptions) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._init_packed((out_features, in_features), bias, options)

    @classmethod
    def like(cls, linear: nn.Linear, options: BinaryOptions) -> PackedBinaryLinear:
        """An empty (all ``+1``) packed layer with ``linear``'s shape."""
        return cls(linear.in_features, linear.out_features, linear.bias is not None, options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _linear_forward(self, x, self.binary_weight(), sign)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, {self.options}"


#: The training layer of each float layer type, and the packed layer of each training one.
TRAINING_LAYERS: dict[type[nn.Module], Any] = {nn.Conv2d: BinaryConv2d, nn.Linear: BinaryLinear}
PACKED_LAYERS: dict[type[nn.Module], Any] = {
    BinaryConv2d: PackedBinaryConv2d, BinaryLinear: PackedBinaryLinear
}
#: The packed layer that replaces each float layer type when a packed file is loaded.
PACKED_FOR_FLOAT: dict[type[nn.Module], Any] = {
    nn.Conv2d: PackedBinaryConv2d, nn.Linear: PackedBinaryLinear
}
