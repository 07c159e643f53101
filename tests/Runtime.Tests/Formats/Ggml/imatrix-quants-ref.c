// Writes imatrix-quants-ref.json: what llama.cpp's libggml-base makes of fixed rows WITH an importance matrix
// (quantize_q{2,3,4,5,6}_K, quantize_iq4_{nl,xs} and quantize_q{4,5}_{0,1} given quant_weights, as llama-quantize --imatrix
// calls them), the reference that tests/Runtime.Tests/Formats/ImatrixQuantTests.cs checks RowCodec.QuantizeWeighted against
// byte for byte. Build against the libggml-base.so of benchmarks/llama-cpp-avx2/build.sh (llama.cpp's prebuilt CPU libraries):
//   gcc -O2 imatrix-quants-ref.c -o /tmp/imatrix-quants-ref ../../../../.tools/llama-cpp-avx2/lib/libggml-base.so -lm \
//       -Wl,-rpath,$PWD/../../../../.tools/llama-cpp-avx2/lib && /tmp/imatrix-quants-ref > imatrix-quants-ref.json
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef size_t (*quantize_fn)(const float *src, void *dst, int64_t nrow, int64_t n_per_row, const float *imatrix);
size_t quantize_q2_K(const float *, void *, int64_t, int64_t, const float *);
size_t quantize_q3_K(const float *, void *, int64_t, int64_t, const float *);
size_t quantize_q4_K(const float *, void *, int64_t, int64_t, const float *);
size_t quantize_q5_K(const float *, void *, int64_t, int64_t, const float *);
size_t quantize_q6_K(const float *, void *, int64_t, int64_t, const float *);
size_t quantize_iq4_nl(const float *, void *, int64_t, int64_t, const float *);
size_t quantize_iq4_xs(const float *, void *, int64_t, int64_t, const float *);
size_t quantize_q4_0(const float *, void *, int64_t, int64_t, const float *);
size_t quantize_q4_1(const float *, void *, int64_t, int64_t, const float *);
size_t quantize_q5_0(const float *, void *, int64_t, int64_t, const float *);
size_t quantize_q5_1(const float *, void *, int64_t, int64_t, const float *);

#define ROW (8 * 256)
#define ROWS 2

static uint32_t state = 12345u;
static float next_unit(void) { // uniform in [-1, 1)
    state = state * 1664525u + 1013904223u;
    return (float)(state >> 8) / 8388608.0f - 1.0f;
}

static void hex_floats(const char *name, const float *v, int n) {
    printf("  \"%s\": \"", name);
    for (int i = 0; i < n; i++) { uint32_t b; memcpy(&b, &v[i], 4); printf("%08x", b); }
    printf("\",\n");
}

static void hex_bytes(const char *name, const uint8_t *v, size_t n, int last) {
    printf("  \"%s\": \"", name);
    for (size_t i = 0; i < n; i++) printf("%02x", v[i]);
    printf("\"%s\n", last ? "" : ",");
}

int main(void) {
    static float x[ROWS * ROW], w[ROW];
    static uint8_t q[ROWS * ROW * 2];
    for (int i = 0; i < ROW; i++) {
        int b = i / 256, e = i % 256;
        float u = next_unit();
        switch (b) { // row 0: the awkward super-blocks of kquants-ref.c
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
    for (int i = 0; i < ROW; i++) { // row 1: weight-like with a spike every 97 columns
        float u = next_unit();
        x[ROW + i] = 0.05f * u * u * u + (i % 97 == 0 ? 0.5f : 0.0f);
    }
    for (int i = 0; i < ROW; i++) { // importance: spread over six decades, zero columns, one zero sub-block, one hot column
        float u = next_unit();
        w[i] = i % 7 == 0 ? 0.0f : powf(10.0f, 3.0f * u);
        if (i >= 256 * 5 && i < 256 * 5 + 32) w[i] = 0.0f;
        if (i % 256 == 200) w[i] = 1e4f;
    }
    printf("{\n  \"row\": %d,\n  \"rows\": %d,\n", ROW, ROWS);
    hex_floats("input", x, ROWS * ROW);
    hex_floats("imatrix", w, ROW);
    struct { const char *name; quantize_fn fn; } types[] = {
        {"q2_k", quantize_q2_K}, {"q3_k", quantize_q3_K}, {"q4_k", quantize_q4_K}, {"q5_k", quantize_q5_K},
        {"q6_k", quantize_q6_K}, {"iq4_nl", quantize_iq4_nl}, {"iq4_xs", quantize_iq4_xs}, {"q4_0", quantize_q4_0},
        {"q4_1", quantize_q4_1}, {"q5_0", quantize_q5_0}, {"q5_1", quantize_q5_1},
    };
    int n = sizeof(types) / sizeof(types[0]);
    for (int t = 0; t < n; t++) {
        size_t size = types[t].fn(x, q, ROWS, ROW, w);
        hex_bytes(types[t].name, q, size, t == n - 1);
    }
    printf("}\n");
    return 0;
}
