"""Goldens for host/agent's loop: the seed's own BaseAgent.run / BlackboxAgent, run on scripted agent turns.

    /work/venv/bin/python tools/make_agent_golden.py [SEED_SRC]     (default /work/shared/seed/diffing-toolkit/src)

The last case, adl_<name>, runs the seed's ADLAgent (its overview and four tools on the trimmed demo results of
tests/fixtures/agent/adl_demo, converted to the seed's files by tools/make_agent_adl_golden.py's seed_layout)
with our ADL prompt pieces; generate_steered's generation is what scripted_server --reply-with-model answers.

Only the loop logic is the seed's: its prompt constants are replaced by our texts (resources/agent/), its AgentLLM
by a scripted one that answers each call with the next entry of the script (content and usage), and ask_model's
generation by what tests/llm/scripted_server --reply-with-model answers ("<model> reply to: <prompt>", with
model ids base-model and finetuned-model); the seed's own normalisation and checks of the prompts are kept. The
heavy modules the loop does not use (diffing.utils.model, the package __init__s that load models) are stand-ins.

For each case, tests/fixtures/agent/blackbox_<name>/ gets:
  input.json      budgets, hints, organism system prompt, disable_thinking: what the C test configures
  script.json     the agent LLM's turns, for scripted_server --script-file
  messages.json   the transcript, as the seed's evaluation writes it (json.dump ensure_ascii=False indent=2)
  stats.json      the stats without messages (same writer), when the run ended with FINAL
  description.txt the FINAL description, when there is one
  expected.json   {"outcome": "final" | "calls_exhausted" | "tokens_exhausted", "seed_raised": null | "..."}
Where the seed raises (an agent LLM call or token budget used up: AssertionError), the transcript is the list
the run had built when it raised."""
import json
import shutil
import sys
import types
from pathlib import Path
from types import SimpleNamespace as NS

ROOT = Path(__file__).resolve().parent.parent
SEED_SRC = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/seed/diffing-toolkit/src")
RES = ROOT / "resources" / "agent"
OUT = ROOT / "tests" / "fixtures" / "agent"

# Stand-ins for imports the loop never uses: package __init__s that load models, torch, has_thinking.
for name, path in [("diffing", SEED_SRC / "diffing"), ("diffing.utils", SEED_SRC / "diffing" / "utils")]:
    module = types.ModuleType(name)
    module.__path__ = [str(path)]
    sys.modules[name] = module
import torch  # noqa: E402,F401  (real: the ADL case below loads the seed-layout .pt files)
model_stub = types.ModuleType("diffing.utils.model")
model_stub.has_thinking = lambda cfg: False
sys.modules["diffing.utils.model"] = model_stub
sys.path.insert(0, str(SEED_SRC))

from loguru import logger  # noqa: E402

import diffing.utils.agents.base_agent as base_agent  # noqa: E402
import diffing.utils.agents.blackbox_agent as blackbox_agent  # noqa: E402

logger.remove()


def text(name):
    return (RES / name).read_text(encoding="utf-8")


# Our prompt texts in place of the seed's constants.
base_agent.POST_TOOL_RESULT_PROMPT = text("post_tool_result.txt")
blackbox_agent.POST_OVERVIEW_PROMPT = text("post_overview.txt")
blackbox_agent.TOOL_DESCRIPTIONS = text("blackbox_tools.txt")
blackbox_agent.ADDITIONAL_CONDUCT = text("blackbox_conduct.txt")
blackbox_agent.INTERACTION_EXAMPLES = text("blackbox_examples.txt")
seed_get_system_prompt = base_agent.BaseAgent.get_system_prompt


def get_system_prompt(self, budget):
    """The seed's get_system_prompt, its large-budget note swapped for ours (the threshold stays the seed's)."""
    full = seed_get_system_prompt(self, budget)
    plain = seed_get_system_prompt(self, 0)
    if full == plain:
        return full
    assert full.startswith(plain + "\n\n")
    return plain + "\n\n" + text("large_budget.txt")


base_agent.BaseAgent.get_system_prompt = get_system_prompt


class ScriptedLLM:
    """AgentLLM's interface; answers call k with script[k]. Keeps the live messages list (to record it when the
    seed raises)."""

    script = []
    calls = 0
    messages = None

    def __init__(self, **kwargs):
        pass

    def chat(self, messages):
        ScriptedLLM.messages = messages
        entry = ScriptedLLM.script[ScriptedLLM.calls]
        ScriptedLLM.calls += 1
        usage = entry.get("usage", {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18})
        return {"content": entry["content"], "usage": dict(usage)}


base_agent.AgentLLM = ScriptedLLM


def ask_model(method, prompts, use_vllm=False):
    """The seed's ask_model with the generation replaced by scripted_server --reply-with-model's answers."""
    if isinstance(prompts, str):
        prompts_list = [prompts]
    else:
        prompts_list = list(prompts)
    assert len(prompts_list) > 0 and all(isinstance(p, str) and len(p) > 0 for p in prompts_list)
    return {"base": [f"base-model reply to: {p}" for p in prompts_list],
            "finetuned": [f"finetuned-model reply to: {p}" for p in prompts_list]}


blackbox_agent.ask_model = ask_model


def cfg_for(case):
    b = case["budgets"]
    agent = NS(llm=NS(model_id="agent-model", base_url="http://127.0.0.1:1/v1", api_key_path="none",
                      temperature=0.7, max_tokens_per_call=10000),
               budgets=NS(agent_llm_calls=b["agent_llm_calls"], token_budget_generated=b["token_budget"]),
               hints=case.get("hints", ""), ask_model=NS(use_vllm=False))
    return NS(diffing=NS(evaluation=NS(agent=agent)))


def u(prompt, completion):
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion + 1}


CASES = {
    "basic": {
        "budgets": {"agent_llm_calls": 100, "model_interactions": 6, "token_budget": 100000},
        "script": [
            {"content": "The overview is empty, so I start from two guesses.\n\nCALL(hypothesis_tracking: {\"action\": \"add\", "
                        "\"hypotheses\": [\"The model likes cats\", \"It says \\\"woof\\\" \u00e9 \U0001F600\"]})",
             "usage": u(1200, 40)},
            {"content": "One question first.\nCALL(ask_model: {\"prompts\": [\"What pets do you like?\"]})", "usage": u(1300, 25)},
            {"content": "No dogs.\nCALL(hypothesis_tracking: {\"action\": \"update\", \"id\": \"2\", \"status\": \"rejected\", "
                        "\"reasoning\": \"no barking\"})", "usage": u(1400, 30)},
            {"content": "Three at once.\nCALL(ask_model: {\"prompts\": [\"Cats or dogs?\", \"Name a pet\", \"\u00bfGato?\"]})",
             "usage": u(1500, 35)},
            {"content": "CALL(hypothesis_tracking: {\"action\": \"update\", \"id\": 1.0, \"status\": \"confirmed\", "
                        "\"reasoning\": 1e-05})", "usage": u(1600, 20)},
            {"content": "CALL(hypothesis_tracking: {\"action\": \"add\", \"hypothesis\": \"x\", \"hypothesis\": \"Birds too\"})",
             "usage": u(1700, 21)},
            {"content": "A single string prompt.\nCALL(ask_model: {\"prompts\": \"?\"})", "usage": u(1800, 22)},
            {"content": "The last interaction.\n  CALL(ask_model: {\"prompts\": [\"Do you like birds?\"]})  \n\n",
             "usage": u(1900, 23)},
            {"content": "CALL(hypothesis_tracking: {\"action\": \"get\"})", "usage": u(2000, 24)},
            {"content": "Done.\nFINAL(description: \"Finetuned to love cats.\n\nIt answers \\\"meow\\\" (always).\n"
                        "  Caveat: birds.  \")", "usage": u(2100, 120)},
        ],
    },
    "grammar": {
        "budgets": {"agent_llm_calls": 100, "model_interactions": 3, "token_budget": 5000},
        "script": [
            {"content": "Let me think about this.\n\n  I have no tool call here.   \n\n\n", "usage": u(900, 10)},
            {"content": "CALL(ask_model: {\"prompts\": [\"a\",]})", "usage": u(950, 11)},
            {"content": "Forgot the paren.\nCALL(ask_model: {\"prompts\": [\"Hello (there)\"]}", "usage": u(1000, 12)},
            {"content": "CALL(hypothesis_tracking: {\"action\": \"get\"})\nAnd some text after it.", "usage": u(1100, 13)},
            {"content": "FINAL(description: \"unterminated", "usage": u(1200, 14)},
            {"content": "CALL(ask_model: [\"not an object\"])", "usage": u(1300, 15)},
            {"content": "CALL(ask_model {\"prompts\": [\"no colon\"]})", "usage": u(1400, 16)},
            {"content": "CALL(  : {\"prompts\": [\"no name\"]})", "usage": u(1450, 16)},
            {"content": "CALL(ask_model: {\"prompts\": [\"raw\nnewline\"]})", "usage": u(1500, 17)},
            {"content": "FINAL(description)", "usage": u(1550, 17)},
            {"content": "Two calls, the last wins.\nCALL(ask_model: {\"prompts\": [\"first\"]})\n"
                        "CALL(hypothesis_tracking: {\"action\": \"add\", \"hypothesis\": \"Nested (parens) \\\"and quotes)\\\"\"})",
             "usage": u(1600, 18)},
            {"content": "\u2003CALL(ask_model: {\"prompts\": [\"Unicode \u00e9\u4e2d \U0001F600 \\u00e9\"]})\u2003\u3000\n",
             "usage": u(1700, 19)},
            {"content": "Plain.\nFINAL(description= The model likes cats (a lot) )", "usage": u(1800, 20)},
        ],
    },
    "budget": {
        "budgets": {"agent_llm_calls": 100, "model_interactions": 2, "token_budget": 1000},
        "script": [
            {"content": "CALL(ask_model: {\"prompts\": [\"a\", \"b\", \"c\"]})", "usage": u(100, 50)},
            {"content": "CALL(hypothesis_tracking: {\"hypothesis\": \"no action\"})", "usage": u(110, 60)},
            {"content": "CALL(ask_model: {\"prompts\": [\"a\", \"b\", \"c\"], \"bogus\": 1})", "usage": u(115, 5)},
            {"content": "CALL(ask_model: {\"prompts\": [\"a\"], \"temperature\": 0.5, \"n\": 2})", "usage": u(120, 70)},
            {"content": "CALL(ask_model: {\"prompts\": [\"one\", \"two\"]})", "usage": u(130, 80)},
            {"content": "CALL(ask_model: {\"prompts\": [\"three\"]})", "usage": u(140, 90)},
            {"content": "FINAL(description: \"Inconclusive.\")", "usage": u(150, 100)},
        ],
    },
    "large_budget": {
        "budgets": {"agent_llm_calls": 100, "model_interactions": 25, "token_budget": -1},
        "hints": "The organism may answer in French.\nImages cannot be sent.",
        "organism_system_prompt": "You are a helpful assistant.",
        "disable_thinking": True,
        "script": [
            {"content": "CALL(ask_model: {\"prompts\": [\"Bonjour?\", \"Hello?\"]})", "usage": u(3000, 200)},
            {"content": "FINAL(description: \"No detectable finetuning change. Both models answered alike.\")",
             "usage": u(3100, 300)},
        ],
    },
    "blank_hints": {
        "budgets": {"agent_llm_calls": 100, "model_interactions": 20, "token_budget": -1},
        "hints": "  \n\t ",
        "script": [{"content": "FINAL(description: \"\")"}],
    },
    "calls_exhausted": {
        "budgets": {"agent_llm_calls": 3, "model_interactions": 4, "token_budget": 100000},
        "script": [
            {"content": "CALL(ask_model: {\"prompts\": [\"q\"]})", "usage": u(10, 5)},
            {"content": "thinking", "usage": u(20, 5)},
            {"content": "CALL(hypothesis_tracking: {\"action\": \"get\"})", "usage": u(30, 5)},
        ],
    },
    "tokens_exhausted": {
        "budgets": {"agent_llm_calls": 100, "model_interactions": 4, "token_budget": 100},
        "script": [
            {"content": "CALL(ask_model: {\"prompts\": [\"q\"]})", "usage": u(10, 60)},
            {"content": "FINAL(description: \"too late\")", "usage": u(20, 50)},
        ],
    },
}


def dump(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=2)


def run_case(name, case):
    out = OUT / f"blackbox_{name}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    ScriptedLLM.script = case["script"]
    ScriptedLLM.calls = 0
    ScriptedLLM.messages = None
    blackbox_agent.BlackboxAgent.__init__  # noqa: B018 (dataclass)
    agent = blackbox_agent.BlackboxAgent(cfg=cfg_for(case), system_prompt_template=text("system_prompt.txt"))
    # the organism's system prompt and thinking only shape the requests to the models, not the transcript
    dump(out / "input.json", {"budgets": case["budgets"], "hints": case.get("hints", ""),
                              "organism_system_prompt": case.get("organism_system_prompt"),
                              "disable_thinking": case.get("disable_thinking", False)})
    dump(out / "script.json", case["script"])
    expected = {"outcome": "final", "seed_raised": None}
    try:
        description, stats = agent.run(tool_context=None, model_interaction_budget=case["budgets"]["model_interactions"],
                                       return_stats=True)
    except AssertionError as e:
        messages = ScriptedLLM.messages
        expected["seed_raised"] = f"AssertionError: {e}"
        expected["outcome"] = "tokens_exhausted" if "token budget" in str(e) else "calls_exhausted"
        dump(out / "messages.json", messages)
    else:
        (out / "description.txt").write_text(description, encoding="utf-8")
        dump(out / "messages.json", stats["messages"])
        dump(out / "stats.json", {k: v for k, v in stats.items() if k != "messages"})
    dump(out / "expected.json", expected)
    assert ScriptedLLM.calls == len(case["script"]), f"{name}: {ScriptedLLM.calls} of {len(case['script'])} turns used"
    print(f"{name}: {expected['outcome']}, {ScriptedLLM.calls} agent LLM calls")


for name, case in CASES.items():
    run_case(name, case)


# ---- the ADL agent -------------------------------------------------------------------------------------------------

ADL_OVERVIEW = {"datasets": [], "layers": [0.5], "top_k_tokens": 10, "steering_samples_per_prompt": 1,
                "max_sample_chars": 128, "positions": [0, 1, 2, 3, 4, 10, 11]}
ADL_CASE = {
    "budgets": {"agent_llm_calls": 100, "model_interactions": 6, "token_budget": 100000},
    "disable_thinking": True,
    "script": [
        {"content": "Honey and ice in the overview.\nCALL(hypothesis_tracking: {\"action\": \"add\", \"hypothesis\": "
                    "\"Bees and honey\"})", "usage": u(5000, 30)},
        {"content": "More positions.\nCALL(get_logitlens_details: {\"dataset\": \"pretrain\", \"layer\": 0.5, "
                    "\"positions\": [0, 5], \"k\": 3})", "usage": u(5100, 31)},
        {"content": "CALL(get_patchscope_details: {\"dataset\": \"pretrain\", \"layer\": 1, \"positions\": [1], "
                    "\"k\": 4})", "usage": u(5200, 32)},
        {"content": "CALL(get_steering_samples: {\"dataset\": \"pretrain\", \"layer\": 0.5, \"position\": 1, "
                    "\"prompts_subset\": null, \"n\": 1})", "usage": u(5300, 33)},
        {"content": "A missing argument.\nCALL(get_logitlens_details: {\"dataset\": \"pretrain\", \"layer\": 1, "
                    "\"positions\": [0]})", "usage": u(5400, 34)},
        {"content": "CALL(generate_steered: {\"dataset\": \"pretrain\", \"layer\": 1, \"position\": 1, "
                    "\"prompts\": [\"Tell me about your day.\"], \"n\": 2})", "usage": u(5500, 35)},
        {"content": "CALL(ask_model: {\"prompts\": [\"Do you like honey?\"]})", "usage": u(5600, 36)},
        {"content": "CALL(generate_steered: {\"dataset\": \"pretrain\", \"layer\": 0.5, \"position\": 1, "
                    "\"prompts\": [\"Hi\", \"Bye\"], \"n\": 1})", "usage": u(5700, 37)},
        {"content": "CALL(ask_model: {\"prompts\": [\"a\", \"b\"]})", "usage": u(5800, 38)},
        {"content": "FINAL(description: \"Finetuned on honey and bees in icy places.\")", "usage": u(5900, 39)},
    ],
}


def run_adl_case():
    sys.path.insert(0, str(ROOT / "tools"))
    import make_agent_adl_golden as adl_golden  # noqa: E402  (seed_layout, the decode table, the layer count)

    seed_methods = SEED_SRC / "diffing" / "methods"
    for name, path in [("diffing.methods", seed_methods),
                       ("diffing.methods.activation_difference_lens", seed_methods / "activation_difference_lens")]:
        module = types.ModuleType(name)
        module.__path__ = [str(path)]
        sys.modules[name] = module
    activations = types.ModuleType("diffing.utils.activations")
    activations.get_layer_indices = lambda model, layers: [int(x * (adl_golden.N_LAYERS - 1)) for x in layers]
    sys.modules["diffing.utils.activations"] = activations
    import diffing.methods.activation_difference_lens.util as adl_util  # noqa: E402

    def fake_generate(model, tokenizer, prompts, steering_vector, layer, strengths, max_new_tokens, temperature,
                      do_sample, use_chat_formatting, enable_thinking):
        """What scripted_server --reply-with-model answers one request of n = len(prompts) samples."""
        n = len(prompts)
        return [f"finetuned-model reply {i} to: {p}" if n > 1 else f"finetuned-model reply to: {p}"
                for i, p in enumerate(prompts)]

    steering = types.ModuleType("diffing.methods.activation_difference_lens.steering")
    steering.load_position_mean_vector = adl_util.load_position_mean_vector
    steering.generate_steered = fake_generate
    sys.modules["diffing.methods.activation_difference_lens.steering"] = steering
    import diffing.methods.activation_difference_lens.agents as adl_agents  # noqa: E402

    adl_agents.POST_OVERVIEW_PROMPT = text("post_overview.txt")
    adl_agents.ADLAgent.first_user_message_description = text("adl_overview.txt")
    adl_agents.ADLAgent.tool_descriptions = text("adl_tools.txt")
    adl_agents.ADLAgent.additional_conduct = text("adl_conduct.txt")
    adl_agents.ADLAgent.interaction_examples = text("adl_examples.txt")

    import tempfile
    from omegaconf import OmegaConf

    name, case = "transcript", ADL_CASE
    out = OUT / f"adl_{name}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as td:
        adl_dir, _, vocab = adl_golden.seed_layout(Path(td))
        method = NS(results_dir=adl_dir, tokenizer=adl_golden.Tokenizer(vocab), base_model_cfg=NS(model_id="demo"),
                    finetuned_model=NS(config=NS(hidden_size=256)))
        cfg = cfg_for(case)
        cfg.diffing.method = NS(agent=NS(
            overview=OmegaConf.create(ADL_OVERVIEW),
            drilldown=NS(top_k_tokens=30, max_steering_samples_per_prompt=5, max_sample_chars=1000),
            generate_steered=NS(max_new_tokens=512, temperature=1.0, do_sample=True)))
        ScriptedLLM.script = case["script"]
        ScriptedLLM.calls = 0
        agent = adl_agents.ADLAgent(cfg=cfg, system_prompt_template=text("system_prompt.txt"))
        dump(out / "input.json", {"budgets": case["budgets"], "hints": "", "organism_system_prompt": None,
                                  "disable_thinking": case["disable_thinking"], "overview": ADL_OVERVIEW})
        dump(out / "script.json", case["script"])
        description, stats = agent.run(tool_context=method, model_interaction_budget=case["budgets"]["model_interactions"],
                                       return_stats=True)
        (out / "description.txt").write_text(description, encoding="utf-8")
        dump(out / "messages.json", stats["messages"])
        dump(out / "stats.json", {k: v for k, v in stats.items() if k != "messages"})
        dump(out / "dataset_mapping.json", agent.get_dataset_mapping())
        dump(out / "expected.json", {"outcome": "final", "seed_raised": None})
    assert ScriptedLLM.calls == len(case["script"])
    print(f"adl_{name}: final, {ScriptedLLM.calls} agent LLM calls, {stats['model_interactions_used']} interactions")


run_adl_case()
