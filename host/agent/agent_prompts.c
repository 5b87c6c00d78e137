/* agent_prompts.c — the agent's prompt texts: read from resources/agent/ (our words, in the seed's structure;
 * resources/agent/README.md) and put together as the seed's get_system_prompt does, with Python's str.format
 * rules for the template, so that a template written for the seed reads the same here. */
#include "agent/agent.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/strutil.h"
#include "io/file.h"

char *dk_agent_prompt_read(const char *dir, const char *name, dk_err *err) {
    char *path = dk_path_join(dir, name);
    size_t size = 0;
    char *text = dk_read_file(path, &size, err);
    if (!text) dk_err_prefix(err, "agent prompt %s (the prompt texts are in resources/agent/ of diffkit): ", name);
    else if (strlen(text) != size) {
        dk_err_set(err, DK_EXIT_USAGE, "agent prompt %s holds a NUL byte: it must be UTF-8 text", path);
        free(text);
        text = NULL;
    }
    free(path);
    return text;
}

/* The value of a {field} of the template, or NULL when the template names something else. */
static const char *field_value(const dk_agent_prompt_parts *parts, const char *name, size_t len) {
    static const char *const names[] = {"first_user_message_description", "tool_descriptions", "additional_conduct",
                                        "interaction_examples"};
    const char *values[] = {parts->first_user_message_description, parts->tool_descriptions,
                            parts->additional_conduct, parts->interaction_examples};
    for (int i = 0; i < 4; i++)
        if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0) return values[i] ? values[i] : "";
    return NULL;
}

char *dk_agent_system_prompt(const char *template_text, const dk_agent_prompt_parts *parts,
                             int64_t model_interactions, dk_err *err) {
    dk_strbuf out = {0};
    dk_strbuf_append(&out, "");
    for (const char *p = template_text; *p;) {
        if (p[0] == '{' && p[1] == '{') {
            dk_strbuf_append(&out, "{");
            p += 2;
        } else if (p[0] == '}' && p[1] == '}') {
            dk_strbuf_append(&out, "}");
            p += 2;
        } else if (p[0] == '}') {
            dk_err_set(err, DK_EXIT_USAGE, "the agent's system prompt template has a single '}' at byte %zu: write "
                       "}} for a literal brace (Python str.format rules)", (size_t)(p - template_text));
            goto fail;
        } else if (p[0] == '{') {
            const char *close = strchr(p + 1, '}');
            if (!close) {
                dk_err_set(err, DK_EXIT_USAGE, "the agent's system prompt template has a '{' without '}' at byte %zu: "
                           "write {{ for a literal brace", (size_t)(p - template_text));
                goto fail;
            }
            const char *value = field_value(parts, p + 1, (size_t)(close - p - 1));
            if (!value) {
                dk_err_set(err, DK_EXIT_USAGE, "the agent's system prompt template names {%.*s}: the fields are "
                           "{first_user_message_description}, {tool_descriptions}, {additional_conduct} and "
                           "{interaction_examples} (write {{ }} for literal braces)", (int)(close - p - 1), p + 1);
                goto fail;
            }
            dk_strbuf_append(&out, value);
            p = close + 1;
        } else {
            const char *next = p + strcspn(p, "{}");
            dk_strbuf_append_n(&out, p, (size_t)(next - p));
            p = next;
        }
    }
    if (model_interactions > 20) {
        if (!parts->large_budget_note) {
            dk_err_set(err, DK_EXIT_USAGE, "the agent's large-budget note (resources/agent/large_budget.txt) was not "
                       "given, and the budget (%lld model interactions) is over 20", (long long)model_interactions);
            goto fail;
        }
        dk_strbuf_append(&out, "\n\n");
        dk_strbuf_append(&out, parts->large_budget_note);
    }
    return dk_strbuf_take(&out);
fail:
    dk_strbuf_free(&out);
    return NULL;
}
