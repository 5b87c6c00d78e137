/* test_backend.c — the device switch (host/model/backend.h) and the host half of the CUDA attention (its tile
 * list), on any machine: with no GPU (or a build without CUDA) device=auto must resolve to the CPU and
 * device=cuda must fail with a message, not crash; with a GPU auto must pick it. device=cpu is dk_forward
 * bit for bit; KL on the device is refused on the CPU. Label: engine (it runs everywhere; the GPU numerics are
 * test_forward_cuda's and test_kl_cuda's). */
#include "test.h"

#include "engine_test.h"
#include "io/file.h"
#include "model/backend.h"
#include "model/forward.h"
#include "model_golden.h"
#ifdef DIFFKIT_HAVE_CUDA
#include "kernels/cuda/attention.cuh"
#endif

static void test_parse(void) {
    dk_device d;
    dk_err err = {0};
    EXPECT(dk_device_parse("auto", &d, &err) == 0 && d == DK_DEVICE_AUTO, "auto");
    EXPECT(dk_device_parse("cpu", &d, &err) == 0 && d == DK_DEVICE_CPU, "cpu");
    EXPECT(dk_device_parse("cuda", &d, &err) == 0 && d == DK_DEVICE_CUDA, "cuda");
    EXPECT(dk_device_parse("gpu", &d, &err) != 0 && err.code == DK_EXIT_USAGE, "gpu must be refused");
    EXPECT_CONTAINS(err.msg, "expected auto, cpu or cuda");
    EXPECT(strcmp(dk_device_name(DK_DEVICE_CUDA), "cuda") == 0, "name");
}

static void test_switch(void) {
    char *dir = engine_fixture("models/llama");
    dk_model m;
    dk_err err = {0};
    CHECK(dk_model_open(dir, &m, &err) == 0, "%s", err.msg);
    char *tok_path = dk_path_join(dir, "tokens.jsonl");
    golden_tokens tok;
    golden_tokens_read(tok_path, &tok);
    const int64_t T = tok.n_tokens, H = m.cfg.hidden_size, layer = 1;
    float *a = dk_malloc((size_t)(T * H) * 4), *b = dk_malloc((size_t)(T * H) * 4);
    dk_batch batch = {tok.ids, T, tok.seq_start, tok.n_seqs, true};
    dk_hook_plan plan = {.n_capture = 1, .capture_layers = &layer, .captures = &a};
    EXPECT(dk_forward(&m, NULL, &batch, &plan, NULL, &err) == 0, "%s", err.msg);

    dk_backend be;
    EXPECT(dk_backend_open(&be, &m, &(dk_backend_options){.device = DK_DEVICE_CPU}, &err) == 0, "%s", err.msg);
    EXPECT(be.device == DK_DEVICE_CPU, "device=cpu resolves to cpu");
    plan.captures = &b;
    EXPECT(dk_backend_forward(&be, NULL, &batch, &plan, NULL, &err) == 0, "%s", err.msg);
    EXPECT(memcmp(a, b, (size_t)(T * H) * 4) == 0, "device=cpu must be dk_forward bit for bit");
    /* KL on the device needs both sides on the GPU: on the CPU the caller takes the host path, and a call
     * anyway is refused with a message, not run */
    EXPECT(!dk_backend_kl_on_device(&be, &be), "a CPU backend takes no KL on the device");
    float kl[1];
    EXPECT(dk_backend_kl_rows(&be, NULL, &be, NULL, &batch, 1.0f, kl, &err) != 0, "KL on the device on the CPU");
    EXPECT_CONTAINS(err.msg, "not both on cuda");
    dk_backend_close(&be);

    const bool gpu = dk_backend_cuda_usable();
    printf("CUDA usable here: %s\n", gpu ? "yes" : "no");
    EXPECT(dk_backend_open(&be, &m, NULL, &err) == 0, "auto: %s", err.msg);
    EXPECT(be.device == (gpu ? DK_DEVICE_CUDA : DK_DEVICE_CPU), "device=auto resolved to %s", dk_device_name(be.device));
    dk_backend_close(&be);
    if (!gpu) {
        dk_err e = {0};
        EXPECT(dk_backend_open(&be, &m, &(dk_backend_options){.device = DK_DEVICE_CUDA}, &e) != 0,
               "device=cuda without a GPU must fail");
        EXPECT(e.code != 0 && strstr(e.msg, "device cuda") != NULL, "message: %s", e.msg);
        printf("device=cuda here: %s\n", e.msg);
    }
    free(a), free(b), free(tok_path), free(dir);
    golden_tokens_free(&tok);
    dk_model_close(&m);
}

static void test_attention_tiles(void) {
#ifdef DIFFKIT_HAVE_CUDA
    const int64_t start[] = {0, 1, 18, 50, 82, 83};
    const int64_t n_seqs = 5;
    const int64_t n = dk_cuda_attention_n_tiles(start, n_seqs);
    EXPECT(n == 1 + 2 + 2 + 2 + 1, "tile count %lld", (long long)n);
    int32_t tiles[4 * 8];
    EXPECT(dk_cuda_attention_tiles(start, n_seqs, tiles) == n, "tiles written");
    /* every query row covered exactly once, in tiles of at most DK_CUDA_ATTN_BQ queries of one sequence */
    int covered[83] = {0};
    for (int64_t i = 0; i < n; i++) {
        EXPECT(tiles[4 * i + 2] >= 1 && tiles[4 * i + 2] <= DK_CUDA_ATTN_BQ, "tile %lld size", (long long)i);
        /* the 4th field names the tile's sequence (dk_cuda_attention_cached finds its cache rows by it) */
        const int32_t seq = tiles[4 * i + 3];
        EXPECT(seq >= 0 && seq < n_seqs && start[seq] == tiles[4 * i], "tile %lld: sequence %d does not start at row %d",
               (long long)i, seq, tiles[4 * i]);
        for (int32_t r = 0; r < tiles[4 * i + 2]; r++) covered[tiles[4 * i] + tiles[4 * i + 1] + r]++;
    }
    int ok = 1;
    for (int i = 0; i < 83; i++) ok &= covered[i] == 1;
    EXPECT(ok, "every row covered once");
#endif
}

int main(void) {
    test_parse();
    test_switch();
    test_attention_tiles();
    return dk_test_finish("test_backend");
}
