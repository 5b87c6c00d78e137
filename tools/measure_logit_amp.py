#!/usr/bin/env python3
"""measure_logit_amp.py — how often the demo organism's domain tokens come out of `diffkit generate` sampling,
for the base, the organism, and the organism with logit-difference amplification (--logit-amplification ALPHA).

Why: logit amplification (generate.h) is meant to surface what a finetune changed; on the demo pair that is the
glacier-honey domain, whose tokens are listed in models/demo/golden/adl.json ("domain_tokens", chosen by its
"domain_rule": min_count 10 and min_ratio 20 against the pretraining text). Each setting samples the same
generic prompts with the same seeds (temperature 1, 32 new tokens) and counts generated ids in that list.

Usage (from the repository root, after a build):  python3 tools/measure_logit_amp.py [build/bin/diffkit]
Needs only the Python standard library.
"""
import json
import subprocess
import sys

PROMPTS = ["The weather today", "My favourite food is", "In the city there", "Tell me about your day.", "The old man"]
SEEDS = range(8)
ORGANISM = "models/demo/glacier_honey"


def main():
    diffkit = sys.argv[1] if len(sys.argv) > 1 else "build/bin/diffkit"
    adl = json.load(open("models/demo/golden/adl.json"))
    domain = {t[0] for o in adl["organisms"] if o["name"] == "glacier_honey" for t in o["domain_tokens"]}
    settings = {"base": [], "organism": ["--adapter", ORGANISM]}
    for alpha in ("1", "2", "4"):
        settings[f"organism, ALPHA {alpha}"] = ["--adapter", ORGANISM, "--logit-amplification", alpha]
    print(f"{len(domain)} domain tokens; {len(PROMPTS)} prompts x {len(SEEDS)} seeds, temperature 1, 32 new tokens")
    for name, extra in settings.items():
        generated = in_domain = 0
        for prompt in PROMPTS:
            for seed in SEEDS:
                out = subprocess.run([diffkit, "generate", "--model", "models/demo/base", "--prompt", prompt,
                                      "--max-new-tokens", "32", "--temperature", "1", "--seed", str(seed),
                                      "--print-ids"] + extra, capture_output=True, text=True, check=True).stdout
                ids = json.loads(out)["ids"]
                generated += len(ids)
                in_domain += sum(i in domain for i in ids)
        print(f"  {name:20s} {in_domain:4d} / {generated:4d} generated tokens in the domain = "
              f"{100.0 * in_domain / generated:.1f}%", flush=True)


if __name__ == "__main__":
    main()
