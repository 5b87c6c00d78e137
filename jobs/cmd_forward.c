/* cmd_forward.c — `diffkit forward`: token ids in, residual streams and logits out, as one packed batch.
 *
 *   diffkit forward --model PATH [--adapter PATH [--adapter-scale W] | --finetuned-model PATH]
 *                   --tokens IN.jsonl --output OUT.safetensors
 *                   [--layers all|none|L1,L2,...] [--logits all|last|none] [--threads N] [--device D]
 *
 * Input: one {"ids": [...]} per line, one sequence each (what `diffkit tokenize` writes). Output: float32
 * tensors seq{i}.layer{L} [T_i, H] (the residual after block L, transformers' hidden_states[L+1]) and
 * seq{i}.logits [T_i, V] (or [1, V] with --logits last). The forward stops after the deepest requested layer
 * when no logits are asked for. Bad input (ids >= vocab size, a layer out of range, a bad line) is an error
 * naming the line or the layer, exit code 2; a bad checkpoint or adapter exits 1. --finetuned-model runs an
 * organism published as a full checkpoint instead of --model, after checking that the two compare token by
 * token (cli_model.h).
 */
#include "cli_model.h"
#include "cli_numbers.h"
#include "commands.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/file.h"
#include "model/backend.h"
#include "model/forward.h"
#include "model/tensor_file.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: diffkit forward --model PATH --tokens IN.jsonl --output OUT.safetensors\n"
            "                       [--adapter PATH [--adapter-scale W] | --finetuned-model PATH]\n"
            "                       [--layers all|none|L1,L2,...]\n"
            "                       [--logits all|last|none] [--threads N] [--device cpu|cuda|auto]\n\n"
            "Runs every {\"ids\": [...]} line of IN.jsonl through the model as one packed batch (causal within each\n"
            "sequence) and writes float32 tensors seq{i}.layer{L} [T, hidden] (residual after block L) and\n"
            "seq{i}.logits [T, vocab] ([1, vocab] with --logits last). Defaults: --layers all --logits all.\n"
            "PATH: a local folder or a Hugging Face id in the local cache. --adapter: a PEFT LoRA folder, applied\n"
            "unmerged with multiplier W (default 1; 0 = the base model, > 1 amplifies). --finetuned-model: an organism\n"
            "published as a full checkpoint, run instead of --model (it must have --model's shapes and tokenizer).\n"
            "--device: cpu (default, the fp32 reference), cuda (bf16 on the GPU; DIFFKIT_CUDA_FP32=1 for fp32), or\n"
            "auto (cuda when this build has CUDA and a GPU is present, else cpu).\n");
}

/* Reads the packed batch; exits through err on a bad line. */
static int read_tokens(const char *path, int64_t **ids_out, int64_t **starts_out, int64_t *n_tokens,
                       int64_t *n_seqs, dk_err *err) {
    size_t size;
    char *text = dk_read_file(path, &size, err);
    if (!text) return -1;
    size_t cap_ids = 1024, cap_seqs = 64;
    int64_t *ids = dk_malloc(cap_ids * sizeof *ids), *starts = dk_malloc((cap_seqs + 1) * sizeof *starts);
    int64_t nt = 0, ns = 0, line_no = 0;
    starts[0] = 0;
    int rc = 0;
    for (char *line = text, *next; line && *line && rc == 0; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        line_no++;
        if (strspn(line, " \t\r") == strlen(line)) continue; /* blank line */
        cJSON *root = cJSON_Parse(line);
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "ids");
        if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0) {
            rc = dk_err_set(err, DK_EXIT_USAGE, "%s:%lld: expected {\"ids\": [at least one token id]}", path,
                            (long long)line_no);
        } else {
            const cJSON *v;
            cJSON_ArrayForEach(v, arr) {
                if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble != (double)(int64_t)v->valuedouble) {
                    rc = dk_err_set(err, DK_EXIT_USAGE, "%s:%lld: token ids must be non-negative integers", path,
                                    (long long)line_no);
                    break;
                }
                if ((size_t)nt == cap_ids) ids = dk_realloc(ids, (cap_ids *= 2) * sizeof *ids);
                ids[nt++] = (int64_t)v->valuedouble;
            }
            if ((size_t)ns == cap_seqs) starts = dk_realloc(starts, ((cap_seqs *= 2) + 1) * sizeof *starts);
            starts[++ns] = nt;
        }
        cJSON_Delete(root);
    }
    free(text);
    if (rc == 0 && ns == 0) rc = dk_err_set(err, DK_EXIT_USAGE, "%s holds no sequences", path);
    if (rc != 0) {
        free(ids);
        free(starts);
        return -1;
    }
    *ids_out = ids;
    *starts_out = starts;
    *n_tokens = nt;
    *n_seqs = ns;
    return 0;
}

/* "all", "none" or "3,7,12" -> layer list (malloc'ed). Range checks happen in dk_forward. */
static int parse_layers(const char *spec, int64_t n_layers, int64_t **out, int64_t *n, dk_err *err) {
    *out = dk_malloc((size_t)(n_layers + 1) * sizeof **out);
    *n = 0;
    if (strcmp(spec, "none") == 0) return 0;
    if (strcmp(spec, "all") == 0) {
        for (int64_t l = 0; l < n_layers; l++) (*out)[(*n)++] = l;
        return 0;
    }
    free(*out);
    size_t cap = 8;
    *out = dk_malloc(cap * sizeof **out);
    for (const char *p = spec; *p;) {
        char *end;
        long long l = strtoll(p, &end, 10);
        if (end == p || (*end != ',' && *end != '\0'))
            return dk_err_set(err, DK_EXIT_USAGE, "--layers '%s': expected all, none or a comma-separated list of "
                              "layer indices such as 3,7,12", spec);
        if ((size_t)*n == cap) *out = dk_realloc(*out, (cap *= 2) * sizeof **out);
        (*out)[(*n)++] = l;
        p = *end ? end + 1 : end;
    }
    return 0;
}

int cmd_forward(int argc, char **argv) {
    const char *model_arg = NULL, *adapter_arg = NULL, *finetuned_arg = NULL, *tokens_path = NULL, *out_path = NULL;
    const char *layers_spec = "all", *logits_spec = "all", *device_spec = "cpu";
    double adapter_scale = 1.0;
    bool scale_given = false;
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) model_arg = argv[++i];
        else if (strcmp(argv[i], "--adapter") == 0 && i + 1 < argc) adapter_arg = argv[++i];
        else if (strcmp(argv[i], "--finetuned-model") == 0 && i + 1 < argc) finetuned_arg = argv[++i];
        else if (strcmp(argv[i], "--adapter-scale") == 0 && i + 1 < argc) {
            adapter_scale = cli_number("forward", "--adapter-scale", argv[++i]);
            scale_given = true;
        }
        else if (strcmp(argv[i], "--tokens") == 0 && i + 1 < argc) tokens_path = argv[++i];
        else if (strcmp(argv[i], "--output") == 0 && i + 1 < argc) out_path = argv[++i];
        else if (strcmp(argv[i], "--layers") == 0 && i + 1 < argc) layers_spec = argv[++i];
        else if (strcmp(argv[i], "--logits") == 0 && i + 1 < argc) logits_spec = argv[++i];
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = (int)cli_integer("forward", "--threads", argv[++i]);
        else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) device_spec = argv[++i];
        else {
            fprintf(stderr, "diffkit forward: unexpected argument '%s'\n\n", argv[i]);
            usage(stderr);
            return DK_EXIT_USAGE;
        }
    }
    if (!model_arg || !tokens_path || !out_path) {
        fprintf(stderr, "diffkit forward: --model, --tokens and --output are required\n\n");
        usage(stderr);
        return DK_EXIT_USAGE;
    }
    dk_logits_mode logits_mode;
    if (strcmp(logits_spec, "all") == 0) logits_mode = DK_LOGITS_ALL;
    else if (strcmp(logits_spec, "last") == 0) logits_mode = DK_LOGITS_LAST;
    else if (strcmp(logits_spec, "none") == 0) logits_mode = DK_LOGITS_NONE;
    else {
        fprintf(stderr, "diffkit forward: --logits '%s': expected all, last or none\n", logits_spec);
        return DK_EXIT_USAGE;
    }

    dk_err err = {0};
    dk_backend_options backend_opt = {0};
    if (dk_device_parse(device_spec, &backend_opt.device, &err) != 0) dk_die(&err);
    cli_model cm;
    cli_model_open("forward", model_arg, adapter_arg, finetuned_arg, adapter_scale, scale_given, &cm);
    dk_model *m = cli_model_run(&cm);
    const dk_lora_adapter *ap = cli_model_adapter(&cm);
    if (threads > 0) m->n_threads = threads;
    int64_t *ids, *starts, n_tokens, n_seqs, *layers, n_layers;
    if (read_tokens(tokens_path, &ids, &starts, &n_tokens, &n_seqs, &err) != 0) dk_die(&err);
    if (parse_layers(layers_spec, m->cfg.num_hidden_layers, &layers, &n_layers, &err) != 0) dk_die(&err);

    const int64_t H = m->cfg.hidden_size, V = m->cfg.vocab_size;
    float **captures = dk_malloc((size_t)(n_layers + 1) * sizeof *captures);
    for (int64_t i = 0; i < n_layers; i++) captures[i] = dk_malloc((size_t)(n_tokens * H) * sizeof(float));
    const int64_t logit_rows = logits_mode == DK_LOGITS_ALL ? n_tokens : logits_mode == DK_LOGITS_LAST ? n_seqs : 0;
    float *logits = dk_malloc((size_t)(logit_rows * V + 1) * sizeof(float));
    dk_batch batch = {ids, n_tokens, starts, n_seqs, true};
    dk_hook_plan plan = {.n_capture = n_layers, .capture_layers = layers, .captures = captures,
                         .logits = logits_mode, .logits_out = logits};
    dk_backend backend;
    if (dk_backend_open(&backend, m, &backend_opt, &err) != 0) dk_die(&err);
    if (dk_backend_forward(&backend, ap, &batch, &plan, NULL, &err) != 0) {
        dk_err_prefix(&err, "%s: ", tokens_path);
        dk_die(&err);
    }

    /* seq{i}.layer{L} views into the (T, H) captures, seq{i}.logits into the logits */
    size_t n_out = (size_t)(n_seqs * (n_layers + (logits_mode != DK_LOGITS_NONE)));
    dk_tensor_out *outs = dk_calloc(n_out ? n_out : 1, sizeof *outs);
    size_t k = 0;
    for (int64_t s = 0; s < n_seqs; s++) {
        const int64_t T = starts[s + 1] - starts[s];
        for (int64_t i = 0; i < n_layers; i++)
            outs[k++] = (dk_tensor_out){dk_sprintf("seq%lld.layer%lld", (long long)s, (long long)layers[i]), 2,
                                        {T, H}, captures[i] + starts[s] * H};
        if (logits_mode == DK_LOGITS_ALL)
            outs[k++] = (dk_tensor_out){dk_sprintf("seq%lld.logits", (long long)s), 2, {T, V}, logits + starts[s] * V};
        else if (logits_mode == DK_LOGITS_LAST)
            outs[k++] = (dk_tensor_out){dk_sprintf("seq%lld.logits", (long long)s), 2, {1, V}, logits + s * V};
    }
    if (dk_write_f32_safetensors(out_path, outs, k, &err) != 0) dk_die(&err);
    fprintf(stderr, "diffkit forward: %lld sequences, %lld tokens -> %s (%zu tensors)\n", (long long)n_seqs,
            (long long)n_tokens, out_path, k);

    for (size_t i = 0; i < k; i++) free(outs[i].name);
    free(outs);
    for (int64_t i = 0; i < n_layers; i++) free(captures[i]);
    free(captures);
    free(logits);
    free(layers);
    free(ids);
    free(starts);
    dk_backend_close(&backend);
    cli_model_close(&cm);
    return 0;
}
