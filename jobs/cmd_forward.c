/* cmd_forward.c — `diffkit forward`: token ids in, residual streams and logits out, as one packed batch.
 *
 *   diffkit forward --model PATH [--adapter PATH[@W|@PRESET] [--adapter-scale W | --amplification FILE_OR_PRESET]
 *                                | --finetuned-model PATH]
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
#include "core/finite.h"
#include "core/format.h"
#include "core/host_memory.h"
#include "core/strutil.h"
#include "io/file.h"
#include "io/json_value.h"
#include "model/backend.h"
#include "model/forward.h"
#include "model/tensor_file.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: diffkit forward --model PATH --tokens IN.jsonl --output OUT.safetensors\n"
            "                       [--adapter PATH [--adapter-scale W | --amplification FILE_OR_PRESET]\n"
            "                        | --finetuned-model PATH]\n"
            "                       [--layers all|none|L1,L2,...]\n"
            "                       [--logits all|last|none] [--threads N] [--device cpu|cuda|auto]\n\n"
            "Runs every {\"ids\": [...]} line of IN.jsonl through the model as one packed batch (causal within each\n"
            "sequence) and writes float32 tensors seq{i}.layer{L} [T, hidden] (residual after block L) and\n"
            "seq{i}.logits [T, vocab] ([1, vocab] with --logits last). Defaults: --layers all --logits all.\n"
            "PATH: a local folder or a Hugging Face id in the local cache. --adapter: a PEFT LoRA folder, applied\n"
            "unmerged with multiplier W (default 1; 0 = the base model, > 1 amplifies).\n"
            "--amplification: one multiplier per layer and attention/mlp from an amplification config (the seed's\n"
            "schema, docs/formats.md) or a preset of configs/diffing/method/amplification_presets (default_2x,\n"
            "default_2.5x, default_3x, negative_1x). --adapter PATH@W / PATH@PRESET are short for --adapter-scale W /\n"
            "--amplification PRESET.\n"
            "--finetuned-model: an organism\n"
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
    for (char *line = text, *next; line < text + size && rc == 0; line = next) {
        char *end = memchr(line, '\n', (size_t)(text + size - line));
        next = end ? end + 1 : text + size;
        size_t len = (size_t)((end ? end : text + size) - line);
        line_no++;
        size_t blank = 0;
        while (blank < len && (line[blank] == ' ' || line[blank] == '\t' || line[blank] == '\r')) blank++;
        if (blank == len) continue;
        char why[256];
        cJSON *root = dk_json_parse_one(line, len, why, sizeof why);
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "ids");
        if (!root) {
            rc = dk_err_set(err, DK_EXIT_USAGE, "%s:%lld: expected {\"ids\": [...]}: %s", path, (long long)line_no, why);
        } else if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0) {
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
        for (int64_t i = 0; i < *n; i++)
            if ((*out)[i] == l)
                return dk_err_set(err, DK_EXIT_USAGE, "--layers '%s': layer %lld is listed twice (each layer is "
                                  "written once, as seq{i}.layer%lld)", spec, l, l);
        if ((size_t)*n == cap) *out = dk_realloc(*out, (cap *= 2) * sizeof **out);
        (*out)[(*n)++] = l;
        p = *end ? end + 1 : end;
    }
    return 0;
}

/* The request must fit in host memory: captures, logits and (CPU) the forward's own buffers. */
static int check_fits(const dk_model *m, const dk_lora_adapter *ap, int64_t n_tokens, int64_t n_seqs,
                      int64_t n_layers, dk_logits_mode logits_mode, dk_device device, dk_err *err) {
    const double H = (double)m->cfg.hidden_size, V = (double)m->cfg.vocab_size;
    const double logit_rows = logits_mode == DK_LOGITS_ALL ? (double)n_tokens
                              : logits_mode == DK_LOGITS_LAST ? (double)n_seqs : 0;
    double logits = 4.0 * logit_rows * V, captures = 4.0 * (double)n_layers * (double)n_tokens * H;
    double need = logits + captures + (device == DK_DEVICE_CUDA ? 0 : (double)dk_forward_host_bytes(m, n_tokens, n_seqs, ap));
    char what[256], b1[DK_FMT_BUF], b2[DK_FMT_BUF], n_s[DK_FMT_BUF];
    snprintf(what, sizeof what, "the forward of %s tokens with --logits %s (logits %s, captures of %lld layer(s) %s)",
             dk_format_count(n_s, (double)n_tokens),
             logits_mode == DK_LOGITS_ALL ? "all" : logits_mode == DK_LOGITS_LAST ? "last" : "none",
             dk_format_bytes(b1, logits), (long long)n_layers, dk_format_bytes(b2, captures));
    const char *hint = logits_mode == DK_LOGITS_ALL
                           ? "use --logits last (or none), capture fewer --layers, or split the tokens into several files"
                           : "capture fewer --layers, or split the tokens into several files";
    return dk_host_memory_check(need >= 1.8e19 ? UINT64_MAX : (uint64_t)need, what, hint, err);
}

/* A sequence longer than the model's context runs (RoPE has no hard limit, as in transformers), but its later
 * positions are outside what the model was trained on: say so. */
static void warn_past_context(const dk_model *m, const int64_t *starts, int64_t n_seqs, const char *path) {
    int64_t longest = 0, which = 0, ctx = m->cfg.max_position_embeddings;
    for (int64_t s = 0; s < n_seqs; s++)
        if (starts[s + 1] - starts[s] > longest) longest = starts[s + 1] - starts[s], which = s;
    if (ctx > 0 && longest > ctx)
        fprintf(stderr, "diffkit forward: warning: %s: sequence %lld has %lld tokens, more than the model's context "
                "(max_position_embeddings %lld); positions past it are outside what the model was trained on\n",
                path, (long long)which, (long long)longest, (long long)ctx);
}

/* The numbers about to be written must be finite: NaN or Inf means broken weights or an absurd scale. */
static int check_finite(const dk_tensor_out *outs, size_t n, const char *model, const char *adapter,
                        const char *scaling, dk_err *err) {
    for (size_t i = 0; i < n; i++) {
        int64_t bad = dk_first_nonfinite_f32(outs[i].data, (size_t)(outs[i].shape[0] * outs[i].shape[1]));
        if (bad < 0) continue;
        char via[512] = "";
        if (adapter) snprintf(via, sizeof via, " with the adapter %s at %s", adapter, scaling);
        return dk_err_set(err, DK_EXIT_RUNTIME, "%s%s gives non-finite values: %s is %s at token %lld, element %lld; "
                          "nothing was written (check the weights, the adapter and its scale)", model, via,
                          outs[i].name, dk_nonfinite_name(outs[i].data[bad]), (long long)(bad / outs[i].shape[1]),
                          (long long)(bad % outs[i].shape[1]));
    }
    return 0;
}

/* NULL-terminated: the token file, then the model's and the adapter's (or full finetune's) *.safetensors (the
 * output must be none of them). Entries after the first are malloc'ed. */
static const char **weight_files(const char *tokens_path, const char *model_dir, const char *adapter_dir) {
    size_t n_model = 0, n_adapter = 0;
    char **model = dk_list_dir(model_dir, ".safetensors", false, &n_model);
    char **adapter = adapter_dir ? dk_list_dir(adapter_dir, ".safetensors", false, &n_adapter) : NULL;
    const char **out = dk_calloc(n_model + n_adapter + 2, sizeof *out);
    size_t k = 0;
    out[k++] = tokens_path;
    for (size_t i = 0; i < n_model; i++) out[k++] = dk_path_join(model_dir, model[i]);
    for (size_t i = 0; i < n_adapter; i++) out[k++] = dk_path_join(adapter_dir, adapter[i]);
    dk_free_strings(model, n_model);
    dk_free_strings(adapter, n_adapter);
    return out;
}

int cmd_forward(int argc, char **argv) {
    const char *model_arg = NULL, *adapter_arg = NULL, *finetuned_arg = NULL, *amplification_arg = NULL;
    const char *tokens_path = NULL, *out_path = NULL;
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
        else if (strcmp(argv[i], "--amplification") == 0 && i + 1 < argc) amplification_arg = argv[++i];
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
    cli_model_open("forward", model_arg, adapter_arg, finetuned_arg, adapter_scale, scale_given, amplification_arg,
                   &cm);
    dk_model *m = cli_model_run(&cm);
    const dk_lora_adapter *ap = cli_model_adapter(&cm);
    if (threads > 0) m->n_threads = threads;
    /* the output first: a path that cannot be written, or that is one of the inputs, fails before the work */
    dk_out_file out;
    const char **inputs = weight_files(tokens_path, cm.base_dir, cm.has_finetuned ? cm.run_dir
                                                                 : cm.has_adapter ? cm.adapter.path : NULL);
    size_t n_inputs = 0;
    while (inputs[n_inputs]) n_inputs++;
    int out_rc = dk_out_open(&out, out_path, inputs, n_inputs, &err);
    for (size_t i = 1; i < n_inputs; i++) free((char *)inputs[i]);
    free(inputs);
    if (out_rc != 0) dk_die(&err);
    int64_t *ids, *starts, n_tokens, n_seqs, *layers, n_layers;
    if (read_tokens(tokens_path, &ids, &starts, &n_tokens, &n_seqs, &err) != 0) dk_die(&err);
    if (parse_layers(layers_spec, m->cfg.num_hidden_layers, &layers, &n_layers, &err) != 0) dk_die(&err);

    const int64_t H = m->cfg.hidden_size, V = m->cfg.vocab_size;
    if (check_fits(m, ap, n_tokens, n_seqs, n_layers, logits_mode, backend_opt.device, &err) != 0) dk_die(&err);
    warn_past_context(m, starts, n_seqs, tokens_path);
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
    if (check_finite(outs, k, finetuned_arg ? finetuned_arg : model_arg, adapter_arg,
                     cm.adapter_scaling, &err) != 0) dk_die(&err);
    if (dk_write_f32_safetensors(&out, outs, k, &err) != 0) dk_die(&err);
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
