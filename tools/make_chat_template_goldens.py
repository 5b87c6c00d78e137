#!/usr/bin/env python3
"""make_chat_template_goldens.py — chat-template goldens from transformers' apply_chat_template (Jinja).

The C renderer (host/tokenizer/chat_template.c) has no Jinja engine; these goldens are what transformers
renders with each family's published template, for conversations chosen to hit every branch (system or
not, multi-turn, whitespace that `trim` removes, <think> blocks, tool results, roles that do not alternate).

    pip install transformers jinja2 tokenizers     (the committed goldens: transformers 5.24.0, jinja2 3.1.6,
                                                    tokenizers 0.23.3)
    python3 tools/make_chat_template_goldens.py [--out tests/fixtures/tokenizers/chat]

Templates: gemma3, qwen3 and llama3_0 come from the tokenizer_config.json files in
tests/fixtures/tokenizers (the Hub files). The Hub files of gemma2 (google/gemma-2-*-it), llama3
(meta-llama/Llama-3.1-8B-Instruct) and qwen2.5 (Qwen/Qwen2.5-*-Instruct) are not in this repository; their
templates are copied below from public copies of those tokenizer_config.json files (Llama 3.1's without the
tool branches' whitespace changed). Ids are encoded with add_special_tokens=False by the tokenizer of the same
family we have (gemma3 for gemma2, llama3_1 for llama3, qwen3 for qwen2.5).

Writes <family>.jsonl: one line per case, {"family", "messages", "add_generation_prompt", "enable_thinking"
(null = not passed), "date_string" (null = not passed), "text", "ids"} or, when the template raises,
{..., "error": message}. Also ../cli/chat_input.jsonl ({"messages"} of the conversations no family rejects)
and ../cli/chat_<family>.jsonl: the byte-exact output of `diffkit chat-template --generation-prompt`.
"""
import argparse
import gzip
import json
import os

from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

GEMMA2 = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
          "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
          "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
          "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
          "{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}")

LLAMA31 = """{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\\n\\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

QWEN25 = "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- messages[0]['content'] }}\n    {%- else %}\n        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n    {%- for tool in tools %}\n        {{- \"\\n\" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n{%- else %}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n{%- for message in messages %}\n    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or (message.role == \"assistant\" and not message.tool_calls) %}\n        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n    {%- elif message.role == \"assistant\" %}\n        {{- '<|im_start|>' + message.role }}\n        {%- if message.content %}\n            {{- '\\n' + message.content }}\n        {%- endif %}\n        {%- for tool_call in message.tool_calls %}\n            {%- if tool_call.function is defined %}\n                {%- set tool_call = tool_call.function %}\n            {%- endif %}\n            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n            {{- tool_call.name }}\n            {{- '\", \"arguments\": ' }}\n            {{- tool_call.arguments | tojson }}\n            {{- '}\\n</tool_call>' }}\n        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n    {%- elif message.role == \"tool\" %}\n        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n            {{- '<|im_start|>user' }}\n        {%- endif %}\n        {{- '\\n<tool_response>\\n' }}\n        {{- message.content }}\n        {{- '\\n</tool_response>' }}\n        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n"


def U(c):
    return {"role": "user", "content": c}


def A(c, reasoning=None):
    m = {"role": "assistant", "content": c}
    if reasoning is not None:
        m["reasoning_content"] = reasoning
    return m


def S(c):
    return {"role": "system", "content": c}


def T(c):
    return {"role": "tool", "content": c}


CONVERSATIONS = [
    [U("Hello!")],
    [U("  What is 2+2?  \n")],
    [S("You are terse."), U("Hi")],
    [S("  padded system \n\n"), U("\tpadded user\t"), A("  padded answer  "), U("next")],
    [U("Write a haiku."), A("Leaves fall\nsoftly down\nautumn ends"), U("Another?"), A("Snow.")],
    [U("日本語で答えて"), A("はい、わかりました。"), U("ありがとう 😀")],
    [U("line1\r\nline2\n\n"), A("\n\nok\n")],
    [U("Think first."), A("<think>\nstep 1\nstep 2\n</think>\n\nThe answer is 4.")],
    [U("Q1"), A("<think>r1</think>A1"), U("Q2"), A("<think>\n\nr2\n\n</think>\n\nA2")],
    [U("Q1"), A("A1", reasoning="explicit reasoning\n"), U("Q2"), A("A2", reasoning="")],
    [U("Q"), A("partial</think>tail</think>\n\nend")],
    [U("weather?"), A("Let me check."), T("sunny, 25\"C\""), T("{\"wind\": \"low\"}"), A("It is sunny.")],
    [U("<tool_response>not really</tool_response>"), A("ok")],
    [S("sys"), U("u1"), S("second system"), U("u2")],
    [A("assistant first")],
    [U("a"), U("b")],
    [U("x\u00a0\u3000"), A("\u2003y\u2028")],
    [U("\x1c\x1fcontrol-ish whitespace\x1e")],
    [U("<|im_start|> and <start_of_turn> and <|eot_id|> inside text")],
]


def load_fast(name, fixtures):
    with gzip.open(os.path.join(fixtures, name, "tokenizer.json.gz"), "rt", encoding="utf-8") as f:
        tok = Tokenizer.from_str(f.read())
    with gzip.open(os.path.join(fixtures, name, "tokenizer_config.json.gz"), "rt", encoding="utf-8") as f:
        config = json.load(f)
    return tok, config


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    fixtures = os.path.join(here, "..", "tests", "fixtures", "tokenizers")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(fixtures, "chat"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    gemma, gemma_cfg = load_fast("gemma3", fixtures)
    llama, llama_cfg = load_fast("llama3_1", fixtures)
    qwen, qwen_cfg = load_fast("qwen3", fixtures)
    families = {
        "gemma3": (gemma, gemma_cfg["chat_template"], "<bos>", [{}]),
        "gemma2": (gemma, GEMMA2, "<bos>", [{}]),
        "llama3_0": (llama, llama_cfg["chat_template"], "<|begin_of_text|>", [{}]),
        "llama3": (llama, LLAMA31, "<|begin_of_text|>", [{}, {"date_string": "05 Nov 2026"}]),
        "qwen3": (qwen, qwen_cfg["chat_template"], None, [{}, {"enable_thinking": True}, {"enable_thinking": False}]),
        "qwen2.5": (qwen, QWEN25, None, [{}]),
    }
    for family, (tok, template, bos, variants) in families.items():
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos)
        n = 0
        with open(os.path.join(args.out, family + ".jsonl"), "w", encoding="utf-8") as out:
            for messages in CONVERSATIONS:
                for gen in (False, True):
                    for extra in variants:
                        row = {"family": family, "messages": messages, "add_generation_prompt": gen,
                               "enable_thinking": extra.get("enable_thinking"), "date_string": extra.get("date_string")}
                        try:
                            text = fast.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                            add_generation_prompt=gen, **extra)
                            row["text"] = text
                            row["ids"] = tok.encode(text, add_special_tokens=False).ids
                        except Exception as e:  # the template raised (jinja2 TemplateError)
                            row["error"] = str(e)
                        out.write(json.dumps(row, ensure_ascii=False) + "\n")
                        n += 1
        print(family, n, "cases")
    # CLI fixtures: conversations every family renders, with the generation prompt.
    cli = os.path.join(args.out, "..", "cli")
    ok = [m for m in CONVERSATIONS if m[0]["role"] == "user" and all(
        (x["role"] == "user") == (i % 2 == 0) for i, x in enumerate(m))]
    with open(os.path.join(cli, "chat_input.jsonl"), "w", encoding="utf-8") as f:
        for m in ok:
            f.write(json.dumps({"messages": m}, ensure_ascii=False) + "\n")
    for family, (tok, template, bos, variants) in families.items():
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos)
        with open(os.path.join(cli, "chat_%s.jsonl" % family), "w", encoding="utf-8") as f:
            for m in ok:
                text = fast.apply_chat_template(m, chat_template=template, tokenize=False, add_generation_prompt=True)
                f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
