// llama_model_quantize with an importance matrix, for checking `convert-weights quantize --imatrix` against llama.cpp:
// gives every 2-D tensor of IN but blk.0.attn_k.weight fixed weights, writes them as a legacy imatrix DAT (ncall 1, 10
// chunks, dataset "calib.txt") and has libllama quantize IN to OUT with them and llama-quantize's quantize.imatrix.* keys.
// Then `convert-weights quantize IN OURS TYPE --imatrix DAT` must give the same metadata and the same bytes for every tensor
// (libllama 3.22.1 writes the tensors in another order). Build with the headers and libraries of build.sh beside it:
//   gcc -O1 -I$INC quantize-imatrix-ref.c -o /tmp/qi $LIB/libllama.v0.5.0.so $LIB/libggml.v0.5.0.so $LIB/libggml-base.so -lm \
//       -Wl,-rpath,$LIB && /tmp/qi IN.bf16.gguf OUT.gguf DAT FTYPE   (FTYPE: llama_ftype, 15 = Q4_K_M, 30 = IQ4_XS, ...)
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "llama.h"
#include "gguf.h"
int main(int argc, char **argv) {
    const char *in = argv[1], *out = argv[2], *dat = argv[3]; int ftype = atoi(argv[4]);
    struct ggml_context *ctx = NULL;
    struct gguf_init_params gp = { true, &ctx };
    struct gguf_context *g = gguf_init_from_file(in, gp);
    int n = (int)gguf_get_n_tensors(g);
    struct llama_model_imatrix_data *im = calloc(n + 1, sizeof *im);
    int k = 0; uint32_t st = 777;
    for (int i = 0; i < n; i++) {
        const char *name = gguf_get_tensor_name(g, i);
        struct ggml_tensor *t = ggml_get_tensor(ctx, name);
        if (ggml_n_dims(t) != 2 || strcmp(name, "blk.0.attn_k.weight") == 0) continue;
        float *w = malloc(t->ne[0] * sizeof(float));
        for (int c = 0; c < t->ne[0]; c++) {
            st = st * 1664525u + 1013904223u;
            w[c] = (st >> 28) == 0 ? 0.0f : expf(4.0f * (float)(st >> 8) / 16777216.0f);
        }
        im[k].name = name; im[k].data = w; im[k].size = t->ne[0]; k++;
    }
    FILE *f = fopen(dat, "wb");
    fwrite(&k, 4, 1, f);
    for (int i = 0; i < k; i++) {
        int len = strlen(im[i].name), one = 1, nv = im[i].size;
        fwrite(&len, 4, 1, f); fwrite(im[i].name, 1, len, f); fwrite(&one, 4, 1, f); fwrite(&nv, 4, 1, f);
        fwrite(im[i].data, 4, nv, f);
    }
    int chunks = 10, dl = 9; fwrite(&chunks, 4, 1, f); fwrite(&dl, 4, 1, f); fwrite("calib.txt", 1, 9, f);
    fclose(f);
    struct llama_model_kv_override kv[5]; memset(kv, 0, sizeof kv);
    kv[0].tag = LLAMA_KV_OVERRIDE_TYPE_STR; strcpy(kv[0].key, "quantize.imatrix.file"); strncpy(kv[0].val_str, dat, 127);
    kv[1].tag = LLAMA_KV_OVERRIDE_TYPE_STR; strcpy(kv[1].key, "quantize.imatrix.dataset"); strcpy(kv[1].val_str, "calib.txt");
    kv[2].tag = LLAMA_KV_OVERRIDE_TYPE_INT; strcpy(kv[2].key, "quantize.imatrix.entries_count"); kv[2].val_i64 = k;
    kv[3].tag = LLAMA_KV_OVERRIDE_TYPE_INT; strcpy(kv[3].key, "quantize.imatrix.chunks_count"); kv[3].val_i64 = chunks;
    llama_backend_init();
    struct llama_model_quantize_params p = llama_model_quantize_default_params();
    p.ftype = ftype; p.nthread = 2; p.imatrix = im; p.kv_overrides = kv;
    int rc = llama_model_quantize(in, out, &p);
    printf("entries %d rc %d\n", k, rc);
    return rc;
}
