"""The sections every dump manifest of the Python tools starts with (DUMP_FORMAT.md): format,
version, producer, model, input; the writers add their own sections after these and write
through dump_io.write_dump."""

from __future__ import annotations

from collections import OrderedDict

from hytools.checkpoint import weights_fingerprint


def producer_section(name, version, device, dtype, precision, mode) -> "OrderedDict":
    return OrderedDict(name=name, version=version, device=device, dtype=dtype, precision=precision, mode=mode)


def model_section(model_type, num_hidden_layers, config_sha256=None, checkpoint=None,
                  weights_dir=None) -> "OrderedDict":
    """model: its type, the sha256 of config.json and the layer count; `checkpoint` is a label
    (a path as the user gave it); with `weights_dir`, the checkpoint directory, also the weights
    fingerprint (checkpoint.weights_fingerprint)."""
    m = OrderedDict(model_type=model_type)
    if config_sha256 is not None:
        m["config_sha256"] = config_sha256
    m["num_hidden_layers"] = num_hidden_layers
    if checkpoint:
        m["checkpoint"] = checkpoint
    if weights_dir is not None:
        m["weights_fingerprint"] = weights_fingerprint(weights_dir)
    return m


def new_manifest(producer, model, token_ids, position_offset=0) -> "OrderedDict":
    man = OrderedDict()
    man["format"] = "hyoracle.dump"
    man["version"] = 1
    man["producer"] = producer
    man["model"] = model
    man["input"] = OrderedDict(token_ids=list(token_ids), position_offset=position_offset)
    return man
