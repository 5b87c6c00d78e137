"""random_models.py — the random-weight models the benchmark drivers run (bench_kl.py, bench_serve.py): a checkpoint
saved as transformers saves it, with the Qwen3 tokenizer of tests/fixtures and a random LoRA adapter on every
projection, and a configuration tree that names them as a model and an organism."""
import gzip
import os
import shutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def save_random_pair(model, model_dir, adapter_dir):
    """Saves `model` (a random-weight transformers model, bf16) into model_dir with the Qwen3 tokenizer, and a random
    LoRA (r 16, alpha 32, all projections) for it into adapter_dir."""
    import peft
    model.save_pretrained(model_dir)
    for name in ("tokenizer.json", "tokenizer_config.json"):  # the fixtures are gzipped; transformers reads plain files
        with gzip.open(os.path.join(ROOT, "tests/fixtures/tokenizers/qwen3", name + ".gz"), "rb") as src, \
                open(os.path.join(model_dir, name), "wb") as dst:
            shutil.copyfileobj(src, dst)
    lcfg = peft.LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                                "up_proj", "down_proj"], init_lora_weights=False)
    peft.get_peft_model(model, lcfg).save_pretrained(adapter_dir)


def write_configs(work, model_name, organism_name, model_dir, adapter_dir):
    """A configuration tree in work/configs: the repository's, plus model `model_name` and organism `organism_name`."""
    cfg = os.path.join(work, "configs")
    if os.path.exists(cfg):
        shutil.rmtree(cfg)
    shutil.copytree(os.path.join(ROOT, "configs"), cfg)
    with open(os.path.join(cfg, "model", model_name + ".yaml"), "w") as f:
        f.write(f"name: {model_name}\nmodel_id: {model_dir}\nrevision: main\ntokenizer_id: null\nchat_template: qwen3\n"
                "end_of_turn_token: <|im_end|>\ndtype: bfloat16\nignore_first_n_tokens_per_sample_during_collection: 0\n"
                "ignore_first_n_tokens_per_sample_during_training: 0\nhas_enable_thinking: true\n")
    with open(os.path.join(cfg, "organism", organism_name + ".yaml"), "w") as f:
        f.write(f"name: {organism_name}\ntype: SDF\ndescription: random LoRA for the benchmark\n"
                f"dataset:\n  id: {ROOT}/data/demo/glacier_honey.train.jsonl.gz\n  splits: [train, validation]\n"
                "  is_chat: false\n  text_column: text\n"
                f"finetuned_models:\n  {model_name}:\n    default:\n      adapter_id: {adapter_dir}\n")
    return cfg
