"""Which model family a config.json belongs to, whose code defines its semantics, and what each
layer of it computes (the same table as io/family.h):

    model_type          family       semantics   HF class
    hy_v3               hy_v3        hy_v3       HYV3ForCausalLM
    hunyuan_v1_moe      hunyuan_v1   hf          HunYuanMoEV1ForCausalLM
    hunyuan_v1_dense    hunyuan_v1   hf          HunYuanDenseV1ForCausalLM
    hunyuan             hunyuan_v1   tencent     (none: Tencent's remote code, HunYuanForCausalLM)

A layer's kind is (is_moe, owns_kv): owns_kv is false for a cross layer of cross-layer attention,
which reads the K/V of the most recent layer that computes its own. The canonical tensors of a
layer are the rows of the family's dataflow table (tools/dataflow.json) that apply to its kind.
Standard library only."""

from __future__ import annotations

from collections import namedtuple

from hytools.dataflow import load_dataflow

Family = namedtuple("Family", "family semantics hf_class")

_BY_MODEL_TYPE = {
    "hy_v3": Family("hy_v3", "hy_v3", "HYV3ForCausalLM"),
    "hunyuan_v1_moe": Family("hunyuan_v1", "hf", "HunYuanMoEV1ForCausalLM"),
    "hunyuan_v1_dense": Family("hunyuan_v1", "hf", "HunYuanDenseV1ForCausalLM"),
    "hunyuan": Family("hunyuan_v1", "tencent", None),
}


def family_of(model_type: str) -> Family:
    """The Family of a config.json model_type; ValueError for one hyoracle does not know."""
    try:
        return _BY_MODEL_TYPE[model_type]
    except KeyError:
        raise ValueError(f"model_type {model_type!r} is not one hyoracle knows "
                         f"({', '.join(sorted(_BY_MODEL_TYPE))})") from None


def family_or_none(model_type):
    """The Family of a model_type, or None for one hyoracle does not know."""
    return _BY_MODEL_TYPE.get(model_type)


def per_layer(value, layer: int):
    """A config field that is one value or a list with one value per layer."""
    return value[layer] if isinstance(value, list) else value


def hunyuan_layer_kinds(cfg: dict) -> list:
    """(is_moe, owns_kv) of each layer of a Hunyuan v1 config.json (either semantics).

    hf: hunyuan_v1_moe makes every layer MoE, hunyuan_v1_dense none, and no layer shares K/V
    (transformers has no cross-layer attention). tencent: MoE when num_experts > 1; with use_cla,
    layer i is a cross layer when i % cla_share_factor != 0."""
    fam = family_of(cfg["model_type"])
    n = int(cfg["num_hidden_layers"])
    if fam.semantics == "hf":
        return [(cfg["model_type"] == "hunyuan_v1_moe", True)] * n
    if fam.semantics != "tencent":
        raise ValueError(f"model_type {cfg['model_type']!r} is not a Hunyuan v1 model")
    f = int(cfg.get("cla_share_factor", 1)) if cfg.get("use_cla", False) else 1
    if f < 1:
        raise ValueError(f"cla_share_factor {f} must be at least 1")
    return [(int(per_layer(cfg.get("num_experts", 1), i)) > 1, i % f == 0) for i in range(n)]


def kv_source(kinds, layer: int) -> int:
    """The layer whose K/V `layer` attends with: itself, or the most recent layer that owns K/V."""
    s = layer
    while not kinds[s][1]:
        s -= 1
    return s


def _applies(applies: str, is_moe: bool, owns_kv: bool) -> bool:
    return {"all": True, "moe": is_moe, "dense": not is_moe,
            "self_kv": owns_kv, "cross_kv": not owns_kv}[applies]


def layer_names(family: str, is_moe: bool, owns_kv: bool = True, modules_only: bool = False) -> list:
    """The canonical tensor names (after "layers.L.") of one layer of that kind, in execution
    order, without the optional moe.topk_margin; modules_only keeps the rows a module-only dump
    holds (the table's `module` column)."""
    out = []
    for s in load_dataflow(family=family)["layer_steps"]:
        if s["role"] == "margin" or not _applies(s["applies"], is_moe, owns_kv):
            continue
        if modules_only and not s.get("module"):
            continue
        if s["name"] not in out:
            out.append(s["name"])
    return out


def forward_names(family: str, kinds, prefix: str = "", modules_only: bool = False) -> list:
    """The canonical tensor names of one forward (kinds: (is_moe, owns_kv) per layer), in
    execution order: the model steps before the layers, each layer, the steps after them
    (generate.* left out)."""
    table = load_dataflow(family=family)

    def model_steps(where):
        return [prefix + s["name"] for s in table["model_steps"]
                if s["where"] == where and not s["name"].startswith("generate.")
                and (s.get("module") or not modules_only)]
    names = model_steps("before_layers")
    for L, (is_moe, owns_kv) in enumerate(kinds):
        names += [f"{prefix}layers.{L}.{n}" for n in layer_names(family, is_moe, owns_kv, modules_only)]
    return names + model_steps("after_layers")
