"""A CPU stand-in for HF transformers' HYV3ForCausalLM and HunYuanMoEV1ForCausalLM, for testing the
verdicts harness's torch code (hf_worker.py, hf_bugs.py, hf_bugs_hunyuan.py, tools/hf_dump.py's
module-only mode and fast-path plumbing) without the real transformers: put
bench/verdicts/standin on PYTHONPATH. It copies the module tree, call structure and dtypes of
transformers 5.x's modeling_hy_v3.py and modeling_hunyuan_v1_moe.py as read from their source
(module-level apply_rotary_pos_emb / eager_attention_forward looked up at call time, an "sdpa"
path that does not call eager_attention_forward, an experts module whose implementation is
chosen per call from config._experts_implementation, a DynamicCache with crop). It is not
transformers: it says nothing about transformers' own numerics."""

from .modeling_hy_v3 import DynamicCache, HYV3ForCausalLM  # noqa: F401
from .modeling_hunyuan_v1_moe import HunYuanMoEV1ForCausalLM  # noqa: F401

__version__ = "standin-5.x"
