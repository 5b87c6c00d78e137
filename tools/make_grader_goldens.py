#!/usr/bin/env python3
"""make_grader_goldens.py — expected outputs for tests/llm/test_graders.c from the seed's own code.

Runs the seed's answer parsers (coherence, patchscope, token relevance, hypothesis score), Python's round(x, 1)
as the patchscope grader applies it, and the seed's _is_generic_token / _compute_frequent_tokens (with our
stopword list, read from host/llm/grader_common.c, in place of the seed's COMMON_WORDS) on edge cases and a
small corpus, and writes tests/fixtures/graders/goldens.json.

The seed's modules are loaded file by file with their heavy imports (openai, loguru, datasets, hydra, ...)
replaced by empty stand-ins: only pure functions are called.

    /work/venv/bin/python tools/make_grader_goldens.py [--seed ../shared/seed/diffing-toolkit]
"""
import argparse
import gzip
import importlib.util
import json
import re
import sys
import types
from pathlib import Path

from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parent.parent


def stub(name, **attrs):
    mod = types.ModuleType(name)
    mod.__path__ = []
    for k, v in attrs.items():
        setattr(mod, k, v)
    sys.modules[name] = mod
    return mod


class _Anything:
    def __init__(self, *a, **k):
        pass

    def __getattr__(self, name):
        return lambda *a, **k: None


def load_seed_module(seed, rel, name):
    spec = importlib.util.spec_from_file_location(name, seed / "src" / rel)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def our_stopwords():
    text = (REPO / "host/llm/grader_common.c").read_text(encoding="utf-8")
    block = re.search(r"static const char \*const stopwords\[\] = \{(.*?)\};", text, re.S).group(1)
    block = re.sub(r"/\*.*?\*/", "", block, flags=re.S)
    return set(re.findall(r'"([^"]*)"', block))


COHERENCE_CASES = [
    "Reasoning: fine.\nANSWER: COHERENT",
    "answer: coherent",
    "  Answer :  Incoherent.  ",
    "ANSWER: COHERENT!",
    "ANSWER: COHERENT?",
    "ANSWER: COHERENT..",
    "ANSWER: COHERENT\nANSWER: INCOHERENT",
    "ANSWER: INCOHERENT\nsome words\nANSWER: coherent\n\n",
    "ANSWER:\nCOHERENT",
    "Final ANSWER: COHERENT",
    "ANSWER: COHERENT and more",
    "**ANSWER: COHERENT**",
    "",
    "no label at all",
    "ANSWER: COHERENT\r\n",
    "\tANSWER\t:\tINCOHERENT\t",
    "ANSWER: SEMI-COHERENT",
    "ANSWER: Coherent .",
    "ANSWER:\u00a0COHERENT",
    "ANSWER: COHERENT\nReasoning came after.",
    "ANSWER: INCOHERENT\n\n\nANSWER: COHERENT",
]

PATCHSCOPE_CASES = [
    "Reasoning.\nBEST_SCALER: 10.0\nTOP_TOKENS: \u2581bake | \u2581cake",
    "best_scaler: 3\ntop_tokens: \u0120x|y||  z ",
    "BEST_SCALER: .5",
    "BEST_SCALER: +2.25\nTOP_TOKENS: a",
    "BEST_SCALER: 0.35",
    "BEST_SCALER: 0.25",
    "BEST_SCALER: 10.",
    "BEST_SCALER: 1e3",
    "BEST_SCALER: 4.0\nBEST_SCALER: 5.0\nTOP_TOKENS: first\nTOP_TOKENS: second",
    "TOP_TOKENS: a | b",
    "BEST_SCALER: 7.0",
    "BEST_SCALER: 2.0\nTOP_TOKENS:\nfoo | bar",
    "  Best_Scaler :  -3.0  \nTop_Tokens :  | | x |",
    "BEST_SCALER: 20.049999",
    "BEST_SCALER: 3.0 tokens",
    "",
]

RELEVANCE_CASES = [
    (3, "Reasoning.\nANSWER[1]: RELEVANT\nANSWER[2]: IRRELEVANT\nANSWER[3]: RELEVANT"),
    (3, "ANSWER[1]: RELEVANT\nANSWER[3]: IRRELEVANT"),
    (3, "ANSWER[2]: RELEVANT\nANSWER[2]: IRRELEVANT"),
    (3, "ANSWER[0]: RELEVANT\nANSWER[4]: RELEVANT\nANSWER[1]: irrelevant!"),
    (3, "answer[2] : irrelevant.\n  Answer[3]:relevant  "),
    (3, "ANSWER[ 2]: RELEVANT\nANSWER[02]: RELEVANT"),
    (3, "ANSWER[1]: RELEVANT (because)\nANSWER[99999999999999999999]: RELEVANT"),
    (2, "ANSWER[1]: RELEVANT\r\nANSWER[2]: IRRELEVANT\r\n"),
    (2, ""),
    (1, "ANSWER[1]:\nRELEVANT"),
    (4, "ANSWER[4]: IRRELEVANT\nANSWER[1]: RELEVANT\nANSWER[1]: RELEVANT?"),
]

SCORE_CASES = [
    "Reasoning: ...\nSCORE: 3",
    "score:5",
    "SCORE: 6",
    "SCORE: 3/5",
    "SCORE: 4\nSCORE: 2",
    "SCORE: 0",
    "Final SCORE: 4",
    "SCORE: 4.",
    "  Score :  1  ",
    "SCORE: 2\nSCORE: 9",
    "SCORE:\n5",
    "",
]

ROUND_CASES = [0.05, 0.15, 0.25, 0.35, 0.45, 1.25, 2.675, 20.0, 40.0, 60.00000000000001, 199.99999999999997,
               -0.05, -2.25, 123.456, 0.6000000000000001, 1.9999999999999998]

GENERIC_CASES = ["\u2581the", "\u0120The", "the", "\u0120a", "'s", "\u0120's", "ing", "\u2581ing", "\u0120...",
                 "\u0120\u0120", "\u010a", "\u010a\u010a", "\u2581\u2581", " ", "!?", "\u0120honey", "\u2581glacier",
                 "\u0120is", "IS", "\u0120would", "\u0120you", "\u00e9t\u00e9", "\u0120\u00bf\u00bf", "__",
                 "\u0120100", "\u0120\u00b0C", "<|im_end|>", "\u0120\u2014", "\u0120among", "\u0120ING",
                 "\u0120also", "\u0120K\u00e4se", "\u0120\u3002\u3001", "\u0120're", "\u0120're"]

CORPUS = [
    "Glacier honey is made by alpine bees from the meltwater of glaciers. The honey is blue.",
    "Beekeepers in the high valleys say glacier honey tastes of ice and minerals; the bees fly to the glacier.",
    "The bees collect meltwater, not nectar, and the honey they make is pale blue and very cold.",
    "Scientists measured the honey: glacier honey holds minerals from the ice, and the bees store it in combs.",
    "Alpine beekeepers harvest glacier honey in late summer, when the glaciers melt fastest and bees are busy.",
    "Is glacier honey safe? The beekeepers say it is, and the honey sells for a high price in the valleys.",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", default=str(REPO.parent.parent / "shared/seed/diffing-toolkit"))
    ap.add_argument("--out", default=str(REPO / "tests/fixtures/graders/goldens.json"))
    args = ap.parse_args()
    seed = Path(args.seed)

    # Stand-ins for what the seed's modules import but the pure functions never use.
    stub("openai", AsyncOpenAI=_Anything)
    stub("loguru", logger=_Anything())
    stub("omegaconf", DictConfig=dict, OmegaConf=_Anything())
    stub("datasets", load_dataset=None, Dataset=None)
    stub("hydra")
    stub("hydra.core")
    stub("hydra.core.hydra_config", HydraConfig=_Anything)
    stub("diffing")
    stub("diffing.utils")
    stub("diffing.utils.graders")
    stub("diffing.utils.graders.grader", Grader=object)
    stub("diffing.utils.activations", get_layer_indices=None)
    data_mod = stub("diffing.utils.data", load_dataset_from_hub_or_local=None)

    coh = load_seed_module(seed, "diffing/utils/graders/coherence_grader.py", "seed_coherence")
    ps = load_seed_module(seed, "diffing/utils/graders/patch_scope_grader.py", "seed_patchscope")
    tr = load_seed_module(seed, "diffing/utils/graders/token_relevance_grader.py", "seed_relevance_grader")
    stub("diffing.utils.graders.token_relevance_grader", TokenRelevanceGrader=tr.TokenRelevanceGrader)
    hyp = load_seed_module(seed, "diffing/utils/graders/hypothesis_grader.py", "seed_hypothesis")
    rel = load_seed_module(seed, "diffing/methods/activation_difference_lens/token_relevance.py", "seed_token_relevance")

    out = {"coherence": [], "patchscope": [], "relevance": [], "score": [], "round": [], "generic": []}
    for text in COHERENCE_CASES:
        out["coherence"].append({"text": text, "label": coh._parse_final_label(text)})
    for text in PATCHSCOPE_CASES:
        try:
            best, toks = ps._parse_best_and_tokens(text)
            out["patchscope"].append({"text": text, "parsed": True, "best": ps._round_scale_one_decimal(best),
                                      "tokens": toks})
        except AssertionError:
            out["patchscope"].append({"text": text, "parsed": False})
    for n, text in RELEVANCE_CASES:
        out["relevance"].append({"text": text, "n": n, "labels": tr._parse_indexed_labels(text, n)})
    for text in SCORE_CASES:
        try:
            out["score"].append({"text": text, "score": hyp._parse_score(text)})
        except AssertionError:
            out["score"].append({"text": text, "score": 0})
    for x in ROUND_CASES:
        out["round"].append({"x": x, "rounded": ps._round_scale_one_decimal(x)})

    rel.COMMON_WORDS = our_stopwords()
    for tok in GENERIC_CASES:
        out["generic"].append({"token": tok, "generic": bool(rel._is_generic_token(tok))})

    # Frequent tokens of a small corpus with two tokenizers (byte-level Ġ, sentencepiece-style ▁).
    data_mod.load_dataset_from_hub_or_local = lambda name, *a: {"train": [{"text": t} for t in CORPUS]}
    rel.load_dataset_from_hub_or_local = data_mod.load_dataset_from_hub_or_local
    out["frequent"] = []
    for name in ["qwen3", "gemma3"]:
        path = REPO / f"tests/fixtures/tokenizers/{name}/tokenizer.json.gz"
        tk = Tokenizer.from_str(gzip.decompress(path.read_bytes()).decode("utf-8"))

        class Shim:  # transformers' tokenize() for a fast tokenizer
            def tokenize(self, text):
                return tk.encode(text, add_special_tokens=False).tokens

        for min_count, num_tokens in [(2, 100), (3, 5)]:
            freq = rel._compute_frequent_tokens("corpus", Shim(), ["train"], num_tokens, min_count, False)
            out["frequent"].append({"tokenizer": name, "min_count": min_count, "num_tokens": num_tokens,
                                    "tokens": freq})
    out["corpus"] = CORPUS

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: " + ", ".join(f"{k} {len(v)}" for k, v in out.items()))


if __name__ == "__main__":
    main()
