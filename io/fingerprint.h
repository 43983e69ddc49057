// fingerprint.h: a cheap fingerprint of a checkpoint's weights, recorded in dump manifests
// (model.weights_fingerprint) so that a dump is never judged against a checkpoint with other
// weights of the same shapes.
//
// Definition (the Python engine helpers compute the same string; a test compares the two):
//   tensors: every tensor of the shards that model.safetensors.index.json lists, or of every
//            *.safetensors file in the directory when there is no index; sorted by name (bytes);
//   digest:  SHA-256 over, per tensor: name 0x00 dtype 0x00 shape 0x00 n 0x00 sample, where dtype
//            is the safetensors spelling ("BF16"), shape the decimal dims joined by "," (empty for
//            a scalar), n the byte count in decimal, and sample all n bytes when n <= 12288, else
//            bytes [0, 4096), [n/2 - 2048, n/2 + 2048) and [n - 4096, n);
//   value:   "sampled-sha256:" + lowercase hex digest.
// It reads at most 12 KiB per tensor, so it costs seconds on a 300 GB checkpoint. It tells
// checkpoints apart that differ in any name, dtype or shape, or in the sampled bytes (any
// re-initialised or retrained tensor); an edit confined to the middle of a large tensor outside
// the three windows goes unnoticed.
#pragma once
#include <string>
#include <vector>

namespace hyoracle {

inline constexpr const char* kWeightsFingerprintPrefix = "sampled-sha256:";

// Fails, naming the file, when a listed shard is missing or unreadable.
std::string weights_fingerprint(const std::string& checkpoint_dir);

// The shards the index lists that are not in the directory (a partly downloaded checkpoint,
// which `hyoracle layer` can still run; its dumps then record no fingerprint).
std::vector<std::string> missing_shards(const std::string& checkpoint_dir);

}  // namespace hyoracle
