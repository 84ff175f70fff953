# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Checkpoint loading: strict, with an error that says what does not match, and reloads keep the pre-processing.

Checkpoints written before a submodule was renamed load too: each model lists its old state-dict key prefixes in
``renamed_state_keys`` and :meth:`CheckpointLoadingMixin.load_state_dict` maps them to the current ones.

A checkpoint is all a trained model needs: it holds the backbone's weights, so ``load_from_checkpoint`` builds the
model without reading the ``backbone_weights`` file or the timm hub
(:func:`~anomalib_nfplus.backbones.weights_from_checkpoint`), and a model built otherwise (``ckpt_path=``,
``anomalib export --ckpt_path``) on a machine without that file or network gets its backbone from the checkpoint
too. A backbone left without weights refuses to train, score or export
(:func:`~anomalib_nfplus.backbones.require_backbone_weights`).
"""

import warnings
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

import torch

from anomalib_nfplus.backbones import require_backbone_weights, weights_from_checkpoint

from .inputs import keep_unstored_transform
from .lightning_host import LightningHost

__all__ = ["CheckpointLoadingMixin"]

_Model = TypeVar("_Model", bound="CheckpointLoadingMixin")

#: Buffers older checkpoints stored beside the tensor they derive from: name -> (source name, derivation).
_DERIVED_BUFFERS: dict[str, tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = {
    "w_perm_inv": ("w_perm", lambda w: w.T),
    "inv_perm": ("perm", torch.argsort),
}


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


def _rename_keys(state_dict: Any, renames: Mapping[str, str], owner: str) -> Any:
    """A copy of ``state_dict`` with each old key prefix of ``renames`` replaced by its new one (one warning).

    Torch's per-module ``_metadata`` (keyed by module path, without the trailing dot) is renamed alike, so modules
    keep their saved versions.
    """

    def rename(key: str) -> str:
        for old, new in renames.items():
            if f"{key}.".startswith(old):  # a key under the old prefix, or the metadata key of the module itself
                return (new + key[len(old) :]) if key.startswith(old) else new[:-1]
        return key

    used = sorted({old for key in state_dict for old in renames if key.startswith(old)})
    if not used:
        return state_dict
    message = (
        f"{owner}: this checkpoint uses old submodule names ({', '.join(used)}); they were mapped to the current "
        "ones. Re-save it (e.g. trainer.save_checkpoint) to store the current names."
    )
    warnings.warn(message, FutureWarning, stacklevel=3)
    renamed = type(state_dict)((rename(key), value) for key, value in state_dict.items())
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        renamed._metadata = type(metadata)((rename(key), value) for key, value in metadata.items())
    return renamed


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
    overrides ``load_state_dict`` and calls this one. A model whose submodules were renamed lists the old
    state-dict key prefixes in :attr:`renamed_state_keys`.
    """

    #: Old state-dict key prefix -> current one, both ending in ``"."`` (e.g. ``"model.encoder."``).
    renamed_state_keys: ClassVar[Mapping[str, str]] = MappingProxyType({})
    #: Old constructor argument name -> current one (set by :func:`.deprecation.renamed_arguments`); read when the
    #: arguments saved in a checkpoint are matched against the signature.
    renamed_arguments: ClassVar[Mapping[str, str]] = MappingProxyType({})

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Strict by default, with an error that lists the mismatching keys and names the likely cause.

        Checkpoints of older versions load: keys under renamed submodules are mapped to the current names (with a
        warning to re-save), and the inverses of the fixed rotations and permutations they also stored are checked
        and dropped.
        """
        state_dict = _drop_derived_buffers(_rename_keys(state_dict, self.renamed_state_keys, type(self).__name__))
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

    @classmethod
    def load_from_checkpoint(cls: type[_Model], *args: Any, **kwargs: Any) -> _Model:
        """Anomalib's ``load_from_checkpoint`` (same arguments); the backbone takes its weights from the checkpoint.

        Neither the saved ``backbone_weights`` file nor the network is needed: the model is built with its backbone's
        pretrained weights pending, and the checkpoint's state dict fills them.
        """
        with weights_from_checkpoint():
            return super().load_from_checkpoint(*args, **kwargs)  # type: ignore[return-value]

    def on_train_start(self) -> None:
        """Refuse to train a backbone whose pretrained weights could not be obtained (after any checkpoint restore)."""
        require_backbone_weights(self)
        super().on_train_start()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Anomalib's restore of the components, keeping the pre-processing where the checkpoint stores none.

        Exports and every other use of a reloaded model depend on it (see :func:`keep_unstored_transform`).
        """
        with keep_unstored_transform(self.pre_processor, checkpoint, type(self).__name__):
            super().on_load_checkpoint(checkpoint)
