# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Checkpoint loading: strict, with an error that says what does not match, and reloads keep the pre-processing."""

from typing import Any

import torch

from .inputs import keep_unstored_transform
from .lightning_host import LightningHost

__all__ = ["CheckpointLoadingMixin"]

#: Buffers older checkpoints stored beside the tensor they derive from: name -> (source name, derivation).
_DERIVED_BUFFERS = {"w_perm_inv": ("w_perm", lambda w: w.T), "inv_perm": ("perm", torch.argsort)}


def _drop_derived_buffers(state_dict: Any) -> Any:
    """A copy of ``state_dict`` without the inverse rotations/permutations that older versions stored.

    The flows now compute an inverse only when the inverse pass needs it, so checkpoints carry each fixed
    rotation once. A stored inverse is checked against its source before it is dropped: a mismatch means a
    damaged or edited checkpoint, refused with the key named.
    """
    derived = [key for key in state_dict if key.rpartition(".")[2] in _DERIVED_BUFFERS]
    if not derived:
        return state_dict
    for key in derived:
        prefix, _, name = key.rpartition(".")
        source_name, derive = _DERIVED_BUFFERS[name]
        source = state_dict.get(f"{prefix}.{source_name}" if prefix else source_name)
        if source is not None and not torch.equal(derive(source), state_dict[key]):
            msg = (
                f"Checkpoint key {key!r} (stored by an older version) is not the inverse of {source_name!r} beside "
                "it: the checkpoint is damaged or was edited. Re-save it from the training run, or delete that key."
            )
            raise RuntimeError(msg)
    kept = type(state_dict)((key, value) for key, value in state_dict.items() if key not in derived)
    if hasattr(state_dict, "_metadata"):
        kept._metadata = state_dict._metadata  # torch keeps per-module versions there
    return kept


def _mismatch(own_state: dict[str, torch.Tensor], state_dict: Any) -> tuple[list[str], list[str]]:
    """Keys missing from ``state_dict``, and keys it has unexpectedly or with another shape."""
    own, given = set(own_state), set(state_dict)
    missing, unexpected = sorted(own - given), sorted(given - own)
    reshaped = [k for k in own & given if tuple(own_state[k].shape) != tuple(state_dict[k].shape)]
    unexpected += [f"{k} (shape {tuple(state_dict[k].shape)}, expected {tuple(own_state[k].shape)})"
                   for k in sorted(reshaped)]  # fmt: skip
    return missing, unexpected


class CheckpointLoadingMixin(LightningHost):
    """Strict ``load_state_dict`` with a readable error, and ``on_load_checkpoint`` that keeps the pre-processing.

    Contract: none beyond ``AnomalibModule``; a model that builds parts from the checkpoint (HGAD's prior)
    overrides ``load_state_dict`` and calls this one.
    """

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Strict by default, with an error that lists the mismatching keys and names the likely cause.

        Checkpoints of older versions, which also stored the inverse of every fixed rotation and permutation, load
        after those inverses are checked and dropped.
        """
        state_dict = _drop_derived_buffers(state_dict)
        if strict:
            missing, unexpected = _mismatch(self.state_dict(), state_dict)
            if missing or unexpected:
                msg = (
                    f"Checkpoint does not match {type(self).__name__}: {len(missing)} missing key(s) "
                    f"{missing[:5]}, {len(unexpected)} unexpected key(s) {unexpected[:5]}. It was saved by another "
                    "model or with other constructor arguments (backbone, layers, blocks, classes...). Load it with "
                    f"{type(self).__name__}.load_from_checkpoint(path), which restores the saved arguments, or build "
                    "the model with the arguments it was trained with."
                )
                raise RuntimeError(msg)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Anomalib's restore of the components, keeping the pre-processing where the checkpoint stores none.

        Exports and every other use of a reloaded model depend on it (see :func:`keep_unstored_transform`).
        """
        with keep_unstored_transform(self.pre_processor, checkpoint, type(self).__name__):
            super().on_load_checkpoint(checkpoint)
