#!/usr/bin/env python3
"""transformers `generate` on the inputs of `benches/rollout.rs`.

The Rust bench exports the tiny model in HF layout and writes the prompt
batch it rolls out (`input_ids`, `attention_mask`, `mm_token_type_ids`
`[P, L]`, `pixel_values_videos`, `video_grid_thw`) to a safetensors file,
then runs this script, which samples `--group` completions per prompt with
`model.generate(do_sample=True, num_return_sequences=G)` on the CPU — T = 1,
no top-k / top-p (transformers' default top_k = 50 is turned off), and no
`eos_token_id`, so every row generates exactly `--max-new-tokens` tokens as
in the Rust engine. After one short warm-up call, each of `--reps` timed
calls gives a rate; the last line is

    RESULT {"tokens": N, "tokens_per_s": [...], "seconds": [...]}

with N the generated tokens of one call (counted from the output, not
assumed). The model runs in float32 with PyTorch's SDPA attention (the
transformers default), `torch.set_num_threads(--threads)`.

Usage (normally via `cargo bench --bench rollout`):

    python benches/hf_generate.py --model DIR --inputs inputs.safetensors \
        --group 8 --max-new-tokens 48 --reps 3 --threads 2 --pad 1026
"""

import argparse
import json
import sys
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="HF-layout model directory")
    parser.add_argument("--inputs", required=True, help="safetensors file of the prompt batch")
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pad", type=int, required=True, help="pad token id")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch
    import transformers
    from safetensors.torch import load_file

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = transformers.AutoModelForImageTextToText.from_pretrained(
        args.model, dtype=torch.float32, attn_implementation="sdpa"
    ).eval()
    # Never stop early: every row generates max_new_tokens (as the engine
    # does in the bench, which has no stop token).
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = args.pad
    inputs = load_file(args.inputs)
    prompt_len = inputs["input_ids"].shape[1]

    def run(new_tokens):
        with torch.inference_mode():
            return model.generate(
                **inputs,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                max_new_tokens=new_tokens,
                num_return_sequences=args.group,
                use_cache=True,
            )

    run(2)  # warm-up
    rates, seconds, tokens = [], [], 0
    for _ in range(args.reps):
        t = time.perf_counter()
        out = run(args.max_new_tokens)
        s = time.perf_counter() - t
        generated = out[:, prompt_len:]
        tokens = generated.numel()
        seconds.append(s)
        rates.append(tokens / s)
        print(f"{tokens} tokens in {s:.2f} s = {tokens / s:.0f} tokens/s", file=sys.stderr)
    print(
        f"transformers {transformers.__version__}, torch {torch.__version__}, "
        f"{out.shape[0]} rows × {out.shape[1] - prompt_len} new tokens"
    )
    print("RESULT " + json.dumps({"tokens": tokens, "tokens_per_s": rates, "seconds": seconds}))


if __name__ == "__main__":
    main()
