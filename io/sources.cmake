# The sources of hyoracle_io, in one list that the main build (io/CMakeLists.txt) and the fuzz
# project (fuzz/CMakeLists.txt, which builds the readers with sanitizers) both include.
set(HYORACLE_IO_SOURCES
  dtype.cpp safetensors.cpp sha256.cpp crc32.cpp output.cpp config.cpp config_hunyuan.cpp checkpoint.cpp dump.cpp
  random_checkpoint.cpp fingerprint.cpp quant.cpp)
