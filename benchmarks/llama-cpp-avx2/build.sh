#!/usr/bin/env bash
# Builds llama-bench-lite against prebuilt llama.cpp libraries from the npm registry, for machines that cannot run the
# AVX-512 builds in ../shared/ref. Output: .tools/llama-cpp-avx2/llama-bench (+ lib/), git-ignored. Needs npm and g++.
#   @node-llama-cpp/linux-x64 3.22.1: libllama, libggml and one libggml-cpu per x86 level (ggml picks the best at load)
#   @fugood/llama.node 1.7.15: the llama.h / ggml headers of a matching llama.cpp (one field short; patched below)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dest="$root/.tools/llama-cpp-avx2"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent @node-llama-cpp/linux-x64@3.22.1 @fugood/llama.node@1.7.15 >/dev/null)
mkdir -p "$work/bin" "$work/src"
tar -xzf "$work"/node-llama-cpp-linux-x64-3.22.1.tgz -C "$work/bin"
tar -xzf "$work"/fugood-llama.node-1.7.15.tgz -C "$work/src"
inc="$work/inc"
mkdir -p "$inc"
cp "$work"/src/package/src/llama.cpp/include/llama.h "$work"/src/package/src/llama.cpp/ggml/include/*.h "$inc/"
# The library's llama_context_params has a 32-bit field (default 1) after n_outputs_max that this header lacks.
python3 - "$inc/llama.h" <<'PY'
import sys
p = sys.argv[1]; s = open(p).read()
anchor = "        uint32_t n_outputs_max;"
i = s.index(anchor); j = s.index("\n", i) + 1
open(p, "w").write(s[:j] + "        uint32_t n_library_extra;\n" + s[j:])
PY
rm -rf "$dest" && mkdir -p "$dest/lib"
cp "$work"/bin/package/bins/linux-x64/*.so "$dest/lib/"
g++ -O2 -std=c++17 -I"$inc" "$here/llama-bench-lite.cpp" -o "$dest/llama-bench" \
  "$dest/lib/libllama.v0.5.0.so" "$dest/lib/libggml.v0.5.0.so" "$dest/lib/libggml-base.so" -Wl,-rpath,'$ORIGIN/lib'
echo "built $dest/llama-bench"
