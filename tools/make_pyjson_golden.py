"""Goldens for host/agent/pyjson.c: what CPython writes for json.dumps(v), json.dumps(v, ensure_ascii=False,
indent=2) and repr(v), and what json.loads accepts, for values chosen to be hard (unicode, astral code points,
control characters, quotes, float32 probabilities, powers of two, big and small numbers, nesting, empty
containers).

    /work/venv/bin/python tools/make_pyjson_golden.py > tests/fixtures/agent/pyjson_golden.json

Output: {"values": [{"input", "dumps", "indent2", "repr"}], "floats": [{"bits", "json", "repr"}],
"loads": [{"text", "ok", "dumps"}]}. `input` is json.dumps(v): the test reads it with dk_pyjson_loads (ints are
the numbers without . e E, as for Python) and writes the three texts. `bits` is the double's IEEE bits in hex,
so non-finite values and exact doubles reach the test unchanged. Seeded: the same file every run."""
import json
import math
import random
import struct
import sys

import numpy as np

rng = random.Random(15)
nprng = np.random.default_rng(15)

strings = [
    "", "plain", "it's", 'say "hi"', "both ' and \"", "back\\slash", "tab\there", "new\nline\r\n",
    "\x01\x08\x0c\x1b\x1f\x7f", "\x80\x85\x9f\xa0\xad\xff", "caf\u00e9 na\u00efve", "\u2028\u2029\u200b\u200e",
    "\ue000 private", "\u0378\ufffe unassigned", "\u4e2d\u6587 \u65e5\u672c\u8a9e", "emoji \U0001F600 \U0001F9EA", "\U00010348 gothic",
    "\ufeffbom", "\u0301combining", "\u00a0nbsp", "\\u0041 not an escape", "FINAL(description: \"x\")",
    "CALL(ask_model: {\"prompts\": [\"a\"]})", "mixed '\"\\\n\t\u00e9\U0001F600",
]
float32s = [float(np.float32(x)) for x in nprng.random(40)] + [float(np.float32(x)) for x in nprng.random(10) * 1e-6]
float32s += [float(np.float32(x)) for x in [0.1, 0.2, 0.3, 1 / 3, 2 / 3, 0.999, 1e-5, 3.4e38, 1.17549435e-38]]
doubles = [0.0, -0.0, 0.1, 0.5, 1.0, 2.0, 1e-05, 0.0001, 0.001, 1e16, 1e15, 123456789.0, 1234567890123456.0,
           12345678901234567.0, 5e-324, 1.7976931348623157e308, 2.2250738585072014e-308, 1e22, 1e23, 9.5, -3.25,
           1.5e16, 0.30000000000000004, 100.0, 1e100, 1.0000000000000002, 4.35, 0.07, 2.5e-05, 123.456]
doubles += [rng.uniform(-1, 1) * 10 ** rng.randint(-30, 30) for _ in range(60)]
ints = [0, 1, -1, 5, 42, -17, 10**9, 2**31, 2**53, -(2**53), 123456789012]

values = []
for s in strings:
    values.append(s)
values.append(strings)
values += float32s[:12] + doubles[:30] + ints
values += [True, False, None, [], {}, [[]], {"a": {}}, [{}], {"": ""}]
values.append({"budgets": {"model_interactions_remaining": 5, "agent_llm_calls_remaining": 99,
                           "token_budget_remaining": -1}})
values.append({"data": {"base": ["reply to: x"], "finetuned": ["r\u00e9ply \U0001F600"]},
               "nested": [1, 2.5, [3, [4, {"k": [None, True, False]}]], "s"], "probs": float32s[12:24],
               "empty_list": [], "empty_obj": {}, "ints": ints, "unicode key \u00e9": "v", "it's": 'q"'})
values.append({"hypotheses": [{"id": 1, "hypothesis": "The model likes \"cats\"", "status": "active",
                               "reasoning": ""}]})

out = {"values": [], "floats": [], "loads": []}
for v in values:
    out["values"].append({"input": json.dumps(v), "dumps": json.dumps(v),
                          "indent2": json.dumps(v, ensure_ascii=False, indent=2), "repr": repr(v)})

special = [math.inf, -math.inf, math.nan]
twos = [2.0 ** k for k in range(-1074, 1024, 7)] + [2.0 ** k for k in (-1074, -1022, -44, -1, 0, 52, 53, 63, 1023)]
for x in special + float32s + doubles + twos + [float(np.float32(2.0 ** k)) * 3 for k in range(-140, 120, 9)]:
    out["floats"].append({"bits": struct.pack(">d", x).hex(), "json": json.dumps(x), "repr": repr(x)})

texts = ['{"a": 1, "b": 2.0, "c": 1e3, "d": -0, "e": 1E-2, "f": [1, 2.5]}', '{"a": 1, "b": 2, "a": 3}',
         '{"prompts": ["x", "y"]}', '  {"k": "v"}  ', '{"a": "x\ny"}', '{"a": "tab\there"}', '01', '1.', '+1', '.5',
         '-', '1e', '1e+', '[1,]', '{"a" 1}', '{"a": 1} x', '"\\u00e9\\ud83d\\ude00"', '[-0.0, 0e0, 10, -10]',
         '{"action": "update", "id": 2, "status": "rejected"}', '{"n": 12345678901234}', 'true', 'null', '[]',
         '{"a": {"a": 1, "a": {"b": 2, "b": 3.5}}}']
for t in texts:
    try:
        v = json.loads(t)
        out["loads"].append({"text": t, "ok": True, "dumps": json.dumps(v)})
    except ValueError:
        out["loads"].append({"text": t, "ok": False, "dumps": ""})

json.dump(out, sys.stdout, indent=1)
sys.stdout.write("\n")
