// io/fingerprint: weights_fingerprint against an independent Python implementation.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "io/fingerprint.h"
#include "tests/common/test_util.h"

namespace hyoracle {
namespace {

// weights_fingerprint against a second implementation written here from the definition in
// io/fingerprint.h (Python's hashlib over the safetensors header it parses itself), on the
// committed fixtures (tiny-mt2 is sharded, with an index), whose largest tensors exceed 12288
// bytes and so take the three-window path.
TEST(WeightsFingerprint, AgreesWithAnIndependentPythonImplementation) {
  if (test::run_command("python3 -c 'import hashlib, json, struct'").status != 0)
    GTEST_SKIP() << "python3 not found: the independent implementation cannot run";
  const std::string script = R"PY(
import glob, hashlib, json, os, struct, sys
d = sys.argv[1]
index = os.path.join(d, 'model.safetensors.index.json')
if os.path.exists(index):
    files = sorted(set(json.load(open(index))['weight_map'].values()))
else:
    files = sorted(os.path.basename(f) for f in glob.glob(os.path.join(d, '*.safetensors')))
tensors = {}
for f in files:
    raw = open(os.path.join(d, f), 'rb').read()
    n = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    for k, e in header.items():
        if k != '__metadata__':
            tensors[k] = (e, raw[8 + n:])
h = hashlib.sha256()
for name in sorted(tensors):
    e, data = tensors[name]
    b, end = e['data_offsets']
    t = data[b:end]
    size = end - b
    for field in (name, e['dtype'], ','.join(str(x) for x in e['shape']), str(size)):
        h.update(field.encode() + b'\0')
    if size <= 12288:
        h.update(t)
    else:
        h.update(t[:4096] + t[size // 2 - 2048:size // 2 + 2048] + t[size - 4096:])
print('sampled-sha256:' + h.hexdigest())
)PY";
  test::TempDir tmp("fingerprint");
  std::ofstream(tmp / "fp.py") << script;
  for (const std::string fixture : {"tiny-hy3", "tiny-mt2"}) {
    const std::string dir = std::string(HYORACLE_SOURCE_DIR) + "/fixtures/" + fixture;
    const test::CommandResult py = test::run_command("python3 " + (tmp / "fp.py") + " " + dir);
    ASSERT_EQ(py.status, 0) << py.out;
    EXPECT_EQ(weights_fingerprint(dir) + "\n", py.out) << fixture;
  }
}

}  // namespace
}  // namespace hyoracle
