// llama-bench-lite: the part of llama.cpp's llama-bench that ../shared/scripts/ref-bench reads, written against the llama.h
// C API, for machines whose CPU cannot run the prebuilt references in ../shared/ref (they need AVX-512). It links the
// prebuilt libllama of npm's @node-llama-cpp/linux-x64 3.22.1, whose ggml loads the CPU variant the machine supports
// (haswell for AVX2). build.sh fetches and builds it; README.md says how the figures compare with llama-bench's.
//
//   llama-bench-lite -m FILE [-p 512] [-n 128] [-r 5] [-t 2] [-fa 0|1] [-d DEPTH | -gp DEPTH,N] [-o json]
//
// pp: one timed pass over p random tokens from an empty cache (or after the depth context); tg: n single-token passes.
// The depth context is filled once, not timed; each repetition then drops everything after it (as `infer bench -d`).
// Each test runs once untimed first. Output: llama-bench's JSON fields avg_ts and stddev_ts (tokens/s) per test.
#include "llama.h"
#include "ggml-backend.h"

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <string>
#include <vector>

extern "C" void ggml_backend_load_all_from_path(const char * dir_path);

// The library's llama_context_params has one more 32-bit field than the header build.sh takes (after n_outputs_max):
// build.sh inserts it, and these hold the fields written here at the library's offsets (read off its defaults).
static_assert(offsetof(llama_context_params, n_threads) == 28, "n_threads at the library's offset");
static_assert(offsetof(llama_context_params, flash_attn_type) == 52, "flash_attn_type at the library's offset");
static_assert(offsetof(llama_context_params, type_k) == 104, "type_k at the library's offset");
static_assert(sizeof(llama_context_params) == 160, "llama_context_params size");

// The library's llama_model_params is larger than the header's: its defaults are passed through as bytes.
struct ModelParams { alignas(8) unsigned char b[128]; };

static double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

static void decode(llama_context * ctx, int n, int n_batch, int pos0, int vocab, std::mt19937 & rng) {
    llama_batch b = llama_batch_init(n_batch, 0, 1);
    for (int done = 0; done < n;) {
        int m = std::min(n_batch, n - done);
        b.n_tokens = m;
        for (int i = 0; i < m; i++) {
            b.token[i] = rng() % vocab;
            b.pos[i] = pos0 + done + i;
            b.n_seq_id[i] = 1;
            b.seq_id[i][0] = 0;
            b.logits[i] = i == m - 1;
        }
        if (llama_decode(ctx, b) != 0) { fprintf(stderr, "llama_decode failed\n"); exit(1); }
        done += m;
    }
    llama_synchronize(ctx);
    llama_batch_free(b);
}

int main(int argc, char ** argv) {
    std::string model, out = "text";
    int p = 512, n = 128, d = 0, r = 5, t = 2, fa = 0;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (i + 1 >= argc) { fprintf(stderr, "option %s needs a value\n", a.c_str()); return 2; }
        std::string v = argv[++i];
        if (a == "-m") model = v;
        else if (a == "-p") p = std::stoi(v);
        else if (a == "-n") n = std::stoi(v);
        else if (a == "-d") d = std::stoi(v);
        else if (a == "-r") r = std::stoi(v);
        else if (a == "-t") t = std::stoi(v);
        else if (a == "-fa") fa = std::stoi(v);
        else if (a == "-o") out = v;
        else if (a == "-gp") { d = std::stoi(v.substr(0, v.find(','))); n = std::stoi(v.substr(v.find(',') + 1)); p = 0; }
        else { fprintf(stderr, "unknown option %s\n", a.c_str()); return 2; }
    }
    if (model.empty() || r < 1 || t < 1) { fprintf(stderr, "usage: llama-bench-lite -m FILE [-p N] [-n N] [-r N] [-t N]\n"); return 2; }

    std::string exe = argv[0];
    ggml_backend_load_all_from_path((exe.substr(0, exe.rfind('/') + 1) + "lib").c_str());
    llama_log_set([](ggml_log_level, const char *, void *) {}, nullptr);
    llama_backend_init();

    alignas(8) static unsigned char mp_bytes[sizeof(ModelParams)];
    ModelParams & mp = *new (mp_bytes) ModelParams(((ModelParams (*)())(void *)llama_model_default_params)());
    llama_model * m = ((llama_model * (*)(const char *, ModelParams))(void *)llama_model_load_from_file)(model.c_str(), mp);
    if (!m) { fprintf(stderr, "could not load %s\n", model.c_str()); return 1; }

    llama_context_params cp = llama_context_default_params();
    if (cp.n_batch != 2048 || cp.n_ubatch != 512 || cp.n_seq_max != 1 || cp.n_threads != 4 || cp.n_threads_batch != 4
        || cp.flash_attn_type != -1 || cp.type_k != GGML_TYPE_F16 || cp.type_v != GGML_TYPE_F16 || !cp.offload_kqv || cp.embeddings) {
        fprintf(stderr, "llama_context_params: the library's defaults are not where this header puts them\n");
        return 1;
    }
    cp.n_ctx = p + n + d;
    cp.n_threads = t;
    cp.n_threads_batch = t;
    cp.flash_attn_type = fa ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.no_perf = true;
    llama_context * ctx = llama_init_from_model(m, cp);
    if (!ctx) { fprintf(stderr, "could not create a context\n"); return 1; }
    if (llama_n_threads(ctx) != t || llama_n_threads_batch(ctx) != t || (int)llama_n_ctx(ctx) < p + n + d) {
        fprintf(stderr, "the context does not have the settings asked for\n");
        return 1;
    }
    fprintf(stderr, "%s\n", llama_print_system_info());

    int vocab = llama_vocab_n_tokens(llama_model_get_vocab(m));
    std::mt19937 rng(42);
    if (d > 0) decode(ctx, d, cp.n_batch, 0, vocab, rng);
    auto run = [&](int np, int ng) {
        if (d > 0) llama_memory_seq_rm(llama_get_memory(ctx), 0, d, -1);
        else llama_memory_clear(llama_get_memory(ctx), true);
        double t0 = now();
        if (np > 0) decode(ctx, np, cp.n_batch, d, vocab, rng);
        for (int i = 0; i < ng; i++) decode(ctx, 1, 1, d + i, vocab, rng);
        return now() - t0;
    };

    bool json = out == "json";
    if (json) printf("[\n");
    bool first = true;
    for (int gen = 0; gen < 2; gen++) {
        int np = gen ? 0 : p, ng = gen ? n : 0;
        if (np + ng == 0) continue;
        run(gen ? 0 : std::min(p, 32), gen ? 1 : 0);  // untimed warm-up
        std::vector<double> ts;
        for (int i = 0; i < r; i++) ts.push_back((np + ng) / run(np, ng));
        double mean = 0, sd = 0;
        for (double x : ts) mean += x;
        mean /= ts.size();
        for (double x : ts) sd += (x - mean) * (x - mean);
        sd = ts.size() > 1 ? std::sqrt(sd / (ts.size() - 1)) : 0;
        if (json)
            printf("%s  {\"n_prompt\": %d, \"n_gen\": %d, \"n_depth\": %d, \"avg_ts\": %.4f, \"stddev_ts\": %.4f}", first ? "" : ",\n",
                   np, ng, d, mean, sd);
        else
            printf("%s%d%s\t%.2f ± %.2f t/s\n", np ? "pp" : "tg", np ? np : ng, d ? (" @ d" + std::to_string(d)).c_str() : "", mean, sd);
        first = false;
    }
    if (json) printf("\n]\n");
    llama_free(ctx);
    llama_model_free(m);
    return 0;
}
