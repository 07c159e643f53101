// Writes kquants-ref.json: ggml's own quantize_row_q{2,3}_K_ref, quantize_iq4_{nl,xs} (as llama-quantize calls them: no
// importance matrix) and their dequantize_row_* on a fixed input, the reference that tests/Runtime.Tests/Formats/
// LowBitKQuantTests.cs checks our Q2_KFormat, Q3_KFormat and IQ4Format against byte for byte.
// Build against the libggml-base.so of benchmarks/llama-cpp-avx2/build.sh (llama.cpp's prebuilt CPU libraries):
//   gcc -O2 kquants-ref.c -o /tmp/kquants-ref ../../../../.tools/llama-cpp-avx2/lib/libggml-base.so -lm \
//       -Wl,-rpath,$PWD/../../../../.tools/llama-cpp-avx2/lib && /tmp/kquants-ref > kquants-ref.json
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

void quantize_row_q2_K_ref(const float *x, void *y, int64_t k);
void dequantize_row_q2_K(const void *x, float *y, int64_t k);
void quantize_row_q3_K_ref(const float *x, void *y, int64_t k);
void dequantize_row_q3_K(const void *x, float *y, int64_t k);
size_t quantize_iq4_nl(const float *src, void *dst, int64_t nrow, int64_t n_per_row, const float *imatrix);
void dequantize_row_iq4_nl(const void *x, float *y, int64_t k);
size_t quantize_iq4_xs(const float *src, void *dst, int64_t nrow, int64_t n_per_row, const float *imatrix);
void dequantize_row_iq4_xs(const void *x, float *y, int64_t k);

#define N (8 * 256)

static uint32_t state = 12345u;
static float next_unit(void) { // uniform in [-1, 1)
    state = state * 1664525u + 1013904223u;
    return (float)(state >> 8) / 8388608.0f - 1.0f;
}

static void hex_floats(const char *name, const float *v, int n, int last) {
    printf("  \"%s\": \"", name);
    for (int i = 0; i < n; i++) { uint32_t b; memcpy(&b, &v[i], 4); printf("%08x", b); }
    printf("\"%s\n", last ? "" : ",");
}

static void hex_bytes(const char *name, const uint8_t *v, int n) {
    printf("  \"%s\": \"", name);
    for (int i = 0; i < n; i++) printf("%02x", v[i]);
    printf("\",\n");
}

int main(void) {
    static float x[N], y[N];
    static uint8_t q[N];
    for (int i = 0; i < N; i++) {
        int b = i / 256, e = i % 256;
        float u = next_unit();
        switch (b) {
            case 0: x[i] = u; break;                                     // uniform
            case 1: x[i] = 0.02f * u * u * u; break;                      // weight-like: most values small
            case 2: x[i] = e == 77 ? 9.5f : 0.1f * u; break;              // one outlier
            case 3: x[i] = 0.0f; break;                                   // all zero
            case 4: x[i] = e / 16 == 5 ? 0.0f : fabsf(u) + 0.25f; break;  // positive only, one zero group
            case 5: x[i] = -3.0f; break;                                  // constant
            case 6: x[i] = 1e-20f * u; break;                             // below ggml's GROUP_MAX_EPS per group
            default: x[i] = (e % 16 == 0 ? 5.0f : 1.0f) * u; break;       // a large value in every group
        }
    }
    printf("{\n  \"elements\": %d,\n", N);
    hex_floats("input", x, N, 0);
    quantize_row_q2_K_ref(x, q, N);
    hex_bytes("q2_k", q, N / 256 * 84);
    dequantize_row_q2_K(q, y, N);
    hex_floats("q2_k_dequant", y, N, 0);
    quantize_row_q3_K_ref(x, q, N);
    hex_bytes("q3_k", q, N / 256 * 110);
    dequantize_row_q3_K(q, y, N);
    hex_floats("q3_k_dequant", y, N, 0);
    quantize_iq4_nl(x, q, 1, N, NULL);
    hex_bytes("iq4_nl", q, N / 32 * 18);
    dequantize_row_iq4_nl(q, y, N);
    hex_floats("iq4_nl_dequant", y, N, 0);
    quantize_iq4_xs(x, q, 1, N, NULL);
    hex_bytes("iq4_xs", q, N / 256 * 136);
    dequantize_row_iq4_xs(q, y, N);
    hex_floats("iq4_xs_dequant", y, N, 1);
    printf("}\n");
    return 0;
}
