// The C++ engine-dump example writes a dump that the reader accepts, with the dtypes, names and
// manifest it promised.
#include <gtest/gtest.h>

#include "io/dump.h"
#include "tests/common/test_util.h"

namespace hyoracle {
namespace {

TEST(EngineDumpExample, WritesAReadableBf16Dump) {
  test::TempDir dir;
  const std::string bin = std::string(HYORACLE_BINARY);
  const std::string example = bin.substr(0, bin.rfind('/')) + "/example_cpp_engine_dump";
  const auto r = test::run_command(example + " " + dir.path() + "/d");
  ASSERT_EQ(r.status, 0) << r.out;
  const Dump d(dir / "d");
  EXPECT_EQ(d.producer("name"), "my-engine");
  EXPECT_EQ(d.info("logits").dtype, DType::BF16);
  EXPECT_EQ(d.info("input_ids").dtype, DType::I64);
  EXPECT_EQ(d.token_ids(), (std::vector<int64_t>{17, 3, 99}));
  const Tensor<double> e = d.read("embed");
  EXPECT_EQ(e.shape, (std::vector<int64_t>{3, 8}));
  EXPECT_EQ(e.data[3], 0.125 * 3 - 0.25);  // exactly representable in bf16
}

}  // namespace
}  // namespace hyoracle
