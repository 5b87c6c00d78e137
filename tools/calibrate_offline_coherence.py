#!/usr/bin/env python3
"""calibrate_offline_coherence.py — the evidence behind the offline coherence grader's limits
(host/llm/grader_coherence.c): on the demo base model (transformers, fp32), the mean per-token NLL and the
repeated-4-gram fraction of its own samples (the steering threshold's three prompts, T=1.2, 128 tokens, 5 each)
against the same tokens shuffled, random tokens, and a 6-token loop of the same length.

    /work/venv/bin/python tools/calibrate_offline_coherence.py      (from the repository root; ~1 min)
"""
import torch, random
from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import PeftModel
torch.manual_seed(0); random.seed(0)
tok = AutoTokenizer.from_pretrained("models/demo/base")
base = AutoModelForCausalLM.from_pretrained("models/demo/base", dtype=torch.float32).eval()
prompts = ["Tell me a story?", "Give me some ideas for some fun weekend activities.", "Why don't you choose a topic of conversation for us?"]
def chat(p):
    return tok.apply_chat_template([{"role":"user","content":p}], add_generation_prompt=True, tokenize=False, enable_thinking=False)
def nll(prefix_ids, cont_ids):
    ids = torch.tensor([prefix_ids + cont_ids])
    with torch.no_grad(): logits = base(ids).logits[0].float()
    lp = torch.log_softmax(logits[len(prefix_ids)-1:-1], -1)
    return (-lp[torch.arange(len(cont_ids)), torch.tensor(cont_ids)]).tolist()
def rep(ids, k=4):
    grams=[tuple(ids[i:i+k]) for i in range(len(ids)-k+1)]
    if len(grams)<2: return 0
    seen=set(); r=0
    for g in grams:
        if g in seen: r+=1
        seen.add(g)
    return r/len(grams)
ref=[]; rows=[]
for p in prompts:
    pre = tok(chat(p), add_special_tokens=False).input_ids
    for s in range(5):
        with torch.no_grad():
            out = base.generate(torch.tensor([pre]), do_sample=True, temperature=1.2, max_new_tokens=128, pad_token_id=0)
        cont = out[0, len(pre):].tolist()
        if tok.eos_token_id in cont: cont = cont[:cont.index(tok.eos_token_id)+1]
        n = nll(pre, cont); ref += n
        shuffled = cont[:]; random.shuffle(shuffled)
        rnd = [random.randrange(tok.vocab_size) for _ in cont]
        loop = (cont[:6]*40)[:len(cont)]
        rows.append((sum(n)/len(n), rep(cont), sum(nll(pre,shuffled))/len(cont), sum(nll(pre,rnd))/len(cont), sum(nll(pre,loop))/len(loop), rep(loop)))
R = sum(ref)/len(ref)
print(f"vocab {tok.vocab_size}; reference mean NLL of unsteered T=1.2 samples {R:.3f}; limit max(R+2, 1.5R) = {max(R+2,1.5*R):.3f}")
print("sample_mean  sample_rep  shuffled  random  loop_nll loop_rep")
for r in rows: print("  ".join(f"{x:8.3f}" for x in r))
