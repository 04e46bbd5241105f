"""Bit packing: a tensor of signs stored as one bit per element, eight elements per byte.

Layout (the format of a binary layer's ``packed_weight`` buffer): the tensor is flattened in
row-major (C) order and zero-padded to a multiple of 8 elements; element ``8 * i + j`` is bit ``j``
(least significant first) of byte ``i``; a set bit is ``+1``, a clear bit ``-1``. A tensor of ``n``
elements takes ``ceil(n / 8)`` bytes (``torch.uint8``).
"""

from __future__ import annotations

import torch

BITS_PER_BYTE = 8
_BIT_WEIGHTS = 2 ** torch.arange(BITS_PER_BYTE, dtype=torch.int32)


def packed_bytes(numel: int) -> int:
    """Bytes that ``numel`` packed elements take: ``ceil(numel / 8)``."""
    return -(-numel // BITS_PER_BYTE)


def pack_signs(values: torch.Tensor) -> torch.Tensor:
    """Pack the signs of ``values`` (``>= 0`` is a set bit, so sign(0) = +1) into ``uint8`` bytes.

    Returns:
        A 1-D ``uint8`` tensor of ``packed_bytes(values.numel())`` bytes on ``values``' device.
    """
    bits = (values.detach().reshape(-1) >= 0).to(torch.int32)
    padding = packed_bytes(bits.numel()) * BITS_PER_BYTE - bits.numel()
    bits = torch.nn.functional.pad(bits, (0, padding))
    weights = _BIT_WEIGHTS.to(bits.device)
    return (bits.view(-1, BITS_PER_BYTE) * weights).sum(dim=1).to(torch.uint8)


def unpack_signs(
    packed: torch.Tensor, shape: torch.Size | tuple[int, ...], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The ``+1``/``-1`` tensor of ``shape`` whose signs :func:`pack_signs` stored in ``packed``.

    Raises:
        ValueError: ``packed`` does not hold ``ceil(prod(shape) / 8)`` bytes.
    """
    numel = 1
    for size in shape:
        numel *= int(size)
    if packed.dtype != torch.uint8 or packed.numel() != packed_bytes(numel):
        raise ValueError(
            f"packed signs of shape {tuple(shape)} need {packed_bytes(numel)} uint8 bytes, got "
            f"{packed.numel()} {packed.dtype} elements"
        )
    weights = _BIT_WEIGHTS.to(packed.device)
    bits = (packed.to(torch.int32).unsqueeze(1) & weights) != 0
    signs = bits.reshape(-1)[:numel].to(dtype) * 2 - 1
    return signs.reshape(tuple(shape))
