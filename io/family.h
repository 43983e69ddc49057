// family.h: which model family a checkpoint belongs to, and whose code defines its semantics.
//
// A family fixes the layer's dataflow (reference/dataflow.h: which tensors exist, in what order,
// from which inputs) and the checkpoint's tensor names (reference/model.cpp). Within a family, the
// semantics say whose implementation a config follows where implementations differ:
//
//   family       model_type(s)                          semantics  defined by
//   hy_v3        hy_v3                                  hy_v3      transformers' HYV3ForCausalLM (docs/model.md)
//   hunyuan_v1   hunyuan_v1_moe, hunyuan_v1_dense       hf         transformers' HunYuanMoEV1/DenseV1 classes
//   hunyuan_v1   hunyuan                                tencent    Tencent's modeling_hunyuan.py (CLA, top-1 p_max)
//
// docs/hunyuan_v1.md lists each difference and its source.
#pragma once
#include <optional>
#include <string>

namespace hyoracle {

enum class Family { hy_v3, hunyuan_v1 };

inline const char* family_name(Family f) { return f == Family::hy_v3 ? "hy_v3" : "hunyuan_v1"; }

inline std::optional<Family> family_from_name(const std::string& s) {
  if (s == "hy_v3") return Family::hy_v3;
  if (s == "hunyuan_v1") return Family::hunyuan_v1;
  return std::nullopt;
}

// The family of a config.json model_type, or nullopt for one hyoracle does not know.
inline std::optional<Family> family_of_model_type(const std::string& t) {
  if (t == "hy_v3") return Family::hy_v3;
  if (t == "hunyuan_v1_moe" || t == "hunyuan_v1_dense" || t == "hunyuan") return Family::hunyuan_v1;
  return std::nullopt;
}

// How the MoE router turns logits into a selection and weights.
//   sigmoid_bias: s = σ(ℓ), selection by s + expert_bias, weights from s (hy_v3)
//   softmax:      p = softmax(ℓ) in fp32, selection and weights from p (hunyuan_v1)
enum class RouterKind { sigmoid_bias, softmax };

}  // namespace hyoracle
