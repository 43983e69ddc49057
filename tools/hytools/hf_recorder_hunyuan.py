"""The capture hooks for transformers' Hunyuan v1 classes (HunYuanMoEV1ForCausalLM,
HunYuanDenseV1ForCausalLM; transformers 5.x), giving the canonical tensors of the hunyuan_v1
dataflow table with HF's layouts undone.

Where each tensor comes from (HF-5's attention: q/k/v projections viewed [B, T, n, d] and
transposed to [B, n, T, d], RoPE, then query_layernorm / key_layernorm per head, then the cache
and the attention kernel):

    attn.q, attn.k, attn.v        q_proj / k_proj / v_proj outputs
    attn.q_rope, attn.k_rope      the outputs of the modeling module's apply_rotary_pos_emb
                                  (wrapped; called once per attention forward, in every kernel)
    attn.q_norm, attn.k_norm      query_layernorm / key_layernorm outputs
    attn.context                  o_proj's input
    moe.router_logits             mlp.gate's (first) output: wg is built in fp32 whatever the
                                  model dtype, so fp32 logits (f64 in exact mode)
    moe.scores                    softmax of those logits in fp32 (f64 in exact mode), as HF's gate
                                  computes them
    moe.topk_ids / topk_weights   mlp.experts' inputs (HF's renormalised weights), reordered by
                                  descending probability, ties to the lower expert id
    moe.routed_out, shared_out    mlp.experts / mlp.shared_mlp outputs
The module-only kind records what forward hooks on modules alone give (no RoPE wrapper, no
q/k/v, context, residual midpoint or scores)."""

from __future__ import annotations

from hytools.families import per_layer
from hytools.hf_recorder import Recorder, _first_tensor, _order_topk, _strip_batch, is_moe, topk_with_tiebreak
from lazy_import import torch  # imported on first use


class HunyuanRecorder(Recorder):
    """Recorder (hf_recorder.py) for HF's Hunyuan v1 classes; same store, prefix and switches."""

    def _topk(self):
        return getattr(self.cfg, "moe_topk", None)

    def _heads_first(self, name, n):
        """Record a [B, n, T, d] tensor (HF's layout after the transpose) as [T, n, d]."""
        def put(t):
            t = _strip_batch(t, 3)
            if t.shape[0] != n or t.shape[2] != self.d:
                raise ValueError(f"{name}: expected [B, {n}, T, {self.d}], got {tuple(t.shape)}")
            self._put(name, t.transpose(0, 1))
        return put

    def _norm_hook(self, name, n):
        put = self._heads_first(name, n)

        def fn(m, i, o):
            if self.enabled:
                with self._paused():
                    put(o)
        return fn

    def _proj_hook(self, name, n):
        def fn(m, i, o):
            if self.enabled:
                with self._paused():
                    t = _strip_batch(o, 2)
                    self._put(name, t.reshape(t.shape[0], n, self.d))
        return fn

    def _kw_pre_hook(self, module, fn):
        """A pre-hook fn(module, args, kwargs); kwargs is {} on a torch without with_kwargs (< 2.0)."""
        try:
            h = module.register_forward_pre_hook(fn, with_kwargs=True)
        except TypeError:
            h = module.register_forward_pre_hook(lambda m, args: fn(m, args, {}))
        self.handles.append(h)

    def _attach(self):
        model, full = self.model, self.kind == "full"
        self._attach_module_stack()
        self._scores = {}
        self._hook(model.model.embed_tokens, self._out_hook("embed", 2))
        for L, layer in enumerate(self.layers):
            p, at = f"layers.{L}.", layer.self_attn
            self._hook(layer.input_layernorm, self._out_hook(p + "input_norm", 2))

            def attn_pre(m, i, _L=L):
                self._cur_layer = _L
            self._hook(at, attn_pre, pre=True)
            if full:
                self._hook(at.q_proj, self._proj_hook(p + "attn.q", self.nq))
                self._hook(at.k_proj, self._proj_hook(p + "attn.k", self.nkv))
                self._hook(at.v_proj, self._proj_hook(p + "attn.v", self.nkv))
            self._hook(at.query_layernorm, self._norm_hook(p + "attn.q_norm", self.nq))
            self._hook(at.key_layernorm, self._norm_hook(p + "attn.k_norm", self.nkv))
            if full:
                self._hook(at.o_proj, self._in_hook(p + "attn.context", 2), pre=True)
            self._hook(at.o_proj, self._out_hook(p + "attn.out", 2))
            if full:
                self._hook(layer.post_attention_layernorm, self._in_hook(p + "resid_mid", 2), pre=True)
            self._hook(layer.post_attention_layernorm, self._out_hook(p + "post_norm", 2))
            self._hook(layer.mlp, self._out_hook(p + "mlp.out", 2))
            if is_moe(layer):
                self._hook(layer.mlp.gate, self._gate_hook(L))
                self._kw_pre_hook(layer.mlp.experts, self._experts_hook(L))
                self._hook(layer.mlp.experts, self._out_hook(p + "moe.routed_out", 2))
                self._hook(layer.mlp.shared_mlp, self._out_hook(p + "moe.shared_out", 2))
            self._hook(layer, self._out_hook(p + "out", 2))
        self._hook(model.model.norm, self._out_hook("final_norm", 2))
        self._hook(model.lm_head, self._out_hook("logits", 2))
        self._cur_layer = None
        if full:
            self._wrap_rope()

    def _wrap_rope(self):
        """q_rope / k_rope: the outputs of apply_rotary_pos_emb ([B, n, T, d] each)."""
        orig = self.modeling.apply_rotary_pos_emb
        rec = self

        def rope_wrapper(q, k, *a, **kw):
            qe, ke = orig(q, k, *a, **kw)
            if rec.enabled:
                rec.rope_calls += 1
                with rec._paused():
                    p = f"layers.{rec._cur_layer}."
                    rec._heads_first(p + "attn.q_rope", rec.nq)(qe)
                    rec._heads_first(p + "attn.k_rope", rec.nkv)(ke)
            return qe, ke
        self._patch_global("apply_rotary_pos_emb", orig, rope_wrapper)

    def _gate_hook(self, L):
        p = f"layers.{L}."

        def fn(m, i, o):
            if not self.enabled:
                return
            with self._paused():
                # transformers 5.17 returns (router_logits, weights, ids), earlier 5.x the logits alone
                logits = _strip_batch(_first_tensor(o), 2)
                # HF: softmax(logits, dtype=float32); float64 where the run promotes fp32 casts
                wide = torch.float64 if logits.dtype == torch.float64 else torch.float32
                scores = torch.softmax(logits, dim=-1, dtype=wide)
                self._scores[(self.prefix, L)] = scores
                self._put(p + "moe.router_logits", logits)
                if self.kind == "full":
                    self._put(p + "moe.scores", scores)
        return fn

    def _experts_hook(self, L):
        p = f"layers.{L}."
        k = per_layer(self.k, L)

        def fn(m, args, kwargs):
            if not self.enabled:
                return
            with self._paused():
                index = args[1] if len(args) > 1 else kwargs["top_k_index"]
                weights = args[2] if len(args) > 2 else kwargs["top_k_weights"]
                scores = self._scores.pop((self.prefix, L)).cpu()
                ids, w = _order_topk(_strip_batch(index, 2).cpu(), _strip_batch(weights, 2).cpu(), scores)
                ref_ids, sorted_s = topk_with_tiebreak(scores, k)
                same = [set(a.tolist()) == set(b.tolist()) for a, b in zip(ids, ref_ids)]
                margins = (sorted_s[:, k - 1] - sorted_s[:, k]).double() if sorted_s.shape[1] > k else None
                self._put(p + "moe.topk_ids", ids.to(torch.int32))
                self._put(p + "moe.topk_weights", w)
                self.router_info.setdefault(self.prefix, {})[L] = {
                    "margins": margins, "set_matches_tiebreak_rule": same, "corrected_dtype": str(scores.dtype)}
        return fn

    def finish_step(self):
        """Nothing to fill in: every tensor is recorded where it is computed."""
