"""The library behind hyoracle's Python tools (tools/hf_dump.py, tools/engine_convert.py,
tools/make_hf_goldens.py, tools/vllm_hooks.py, tools/dump_subset.py, tools/tencent_hunyuan_dump.py),
one module per concern:

    checkpoint        config.json, checkpoint files, sha256, the weights fingerprint
    manifest          the producer / model / input sections every dump manifest starts with
    module_names      what a module-only dump holds (forward hooks on modules alone)
    convert_rules     engine tensor names -> what they are (SGLang dumper / vLLM hooks)
    convert_read      reading the engines' .pt files and the config sizes they depend on
    convert_tp        undoing fused and tensor-parallel layouts (pure functions over tensors)
    convert_assemble  one forward pass of engine files -> canonical tensors
    convert           a whole engine dump directory -> a hyoracle dump
    families          model_type -> family / semantics / HF class; a layer's kind and its
                      canonical names from the family's dataflow table
    hf_precision      strict fp settings, the float64 promotion mode, exact-mode preparation
    hf_load           loading the HF class (HYV3ForCausalLM, HunYuan*V1ForCausalLM) and choosing
                      its attention / experts kernels
    hf_recorder       the forward hooks that capture canonical tensors from HF's model
    hf_recorder_hunyuan  the same for transformers' Hunyuan v1 classes
    hf_run            prefill + greedy decode under the recorder, and the dump it writes
    tencent_hunyuan   an independent float64 Hunyuan v1 forward (Tencent's or HF's semantics)
    tencent_hunyuan_run  its prefill + greedy decode with per-layer caches, and its dump
    goldens_*         the tiny fixtures, their float64 reference forward, planted bugs and
                      the build / check / post / device commands of make_hf_goldens.py

The dump writer and reader is tools/dump_io.py and the lazy torch import tools/lazy_import.py
(both top-level modules of tools/, which is on sys.path wherever this package is importable).
Importing any module here needs no torch: it is imported on first use.
"""
