#!/usr/bin/env python3
"""One GRPO step written the way TRL's `GRPOTrainer` runs it, in
transformers + torch, on the inputs of `benches/grpo_step.rs`.

The Rust bench exports the model in HF layout and writes the step's prompt
batch (`input_ids`, `attention_mask`, `mm_token_type_ids` `[P, L]`,
`pixel_values_videos`, `video_grid_thw`) to a safetensors file, then runs
this script. Each step does what `GRPOTrainer._generate_and_score_completions`
and `compute_loss` do with `num_iterations = 1` (so, as in TRL, there is no
separate old-policy pass: the old log-probs are the detached current ones):

1. `generate`: `model.generate(do_sample=True, num_return_sequences=G)` —
   T = 1, no top-k / top-p, rows ending at the `--eos` ids (vgrpo's stop
   tokens), at most `--max-new-tokens`; the completion mask keeps each
   row's tokens up to and including its first end token (TRL's);
2. `reference`: the frozen reference's forward over every prompt+completion
   row (prompt and video repeated per row, as TRL's batch is), per-token
   log-probs of the completion (`logits_to_keep`, selective log-softmax);
3. `update`: the policy's forward + backward on the same rows, TRL's loss
   (`-min(r·A, clip(r, 1-ε, 1+ε)·A) + β·k3`, token mean over the batch,
   TRL's `dapo`/`bnpo` normalisation = vgrpo's `token_mean`), gradient
   clipping at 1.0 and one AdamW step.

The rewards are a fixed function of the sampled ids (the reward's cost is
nothing beside the model's), advantages the group-normalised ones. Times
are `time.perf_counter` around each phase; the first step is a warm-up.
The last line is

    RESULT {"steps": [{"generate": s, "reference": s, "update": s, "step": s,
                       "completion_tokens": n}, ...], "rows": R, "peak_rss_bytes": B}

Usage (normally via `cargo bench --bench grpo_step`):

    python benches/trl_grpo_step.py --model DIR --inputs inputs.safetensors \
        --group 8 --max-new-tokens 48 --steps 3 --threads 2 --pad 1026 --eos 1025,1026
"""

import argparse
import json
import sys
import time


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True, help="HF-layout model directory")
    p.add_argument("--inputs", required=True, help="safetensors file of the prompt batch")
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--pad", type=int, required=True, help="pad token id")
    p.add_argument("--eos", required=True, help="comma-separated ids that end a row")
    p.add_argument(
        "--suppress", default="", help="comma-separated ids never sampled (the vision placeholders)"
    )
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--beta", type=float, default=0.04, help="KL coefficient")
    p.add_argument("--epsilon", type=float, default=0.2, help="clip range")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, …)")
    return p.parse_args()


def selective_log_softmax(logits, index):
    """TRL's `selective_log_softmax`: log-softmax gathered at `index`,
    row by row to bound memory. logits `[B, T, V]`, index `[B, T]`."""
    import torch

    out = []
    for row_logits, row_index in zip(logits, index):
        logp = torch.log_softmax(row_logits, dim=-1)
        out.append(logp.gather(-1, row_index.unsqueeze(-1)).squeeze(-1))
    return torch.stack(out)


def per_token_logps(model, batch, completion_ids, temperature=1.0):
    """Completion log-probs `[B, T]` (TRL's `_get_per_token_logps`)."""
    t = completion_ids.shape[1]
    logits = model(**batch, logits_to_keep=t + 1, use_cache=False).logits
    logits = logits[:, :-1, :] / temperature
    return selective_log_softmax(logits, completion_ids)


def repeat_videos(inputs, group):
    """Each prompt's video patches and grid repeated `group` times, in row
    order (TRL's batch carries every row's own copy)."""
    import torch

    grids = inputs["video_grid_thw"]
    patches = inputs["pixel_values_videos"]
    counts = (grids[:, 0] * grids[:, 1] * grids[:, 2]).tolist()
    pieces = torch.split(patches, counts)
    rows = len(pieces)
    pixel = torch.cat([pieces[i] for i in range(rows) for _ in range(group)])
    grid = grids.repeat_interleave(group, dim=0)
    return pixel, grid


def main():
    args = parse_args()
    import torch
    import transformers
    from safetensors.torch import load_file

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    load = dict(dtype=torch.float32, attn_implementation="sdpa")
    policy = transformers.AutoModelForImageTextToText.from_pretrained(args.model, **load).to(device)
    reference = transformers.AutoModelForImageTextToText.from_pretrained(args.model, **load).to(device)
    reference.eval().requires_grad_(False)
    eos = [int(i) for i in args.eos.split(",")]
    # A sampled <|video_pad|> in a completion would make transformers look
    # for video features that are not there; vgrpo places video features by
    # token type, so it may sample them. The cost is the same either way.
    suppress = [int(i) for i in args.suppress.split(",") if i] or None
    for m in (policy, reference):
        m.generation_config.eos_token_id = eos
        m.generation_config.pad_token_id = args.pad
    optimizer = torch.optim.AdamW(
        policy.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8,
        weight_decay=args.weight_decay,
    )
    inputs = {k: v.to(device) for k, v in load_file(args.inputs).items()}
    group = args.group

    def clock():
        # GPU kernels run asynchronously: a phase ends when its work has.
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()
    pixel, grid = repeat_videos(inputs, group)

    def step():
        times = {}
        start = t = clock()
        policy.eval()
        with torch.no_grad():
            out = policy.generate(
                **inputs, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                max_new_tokens=args.max_new_tokens, num_return_sequences=group,
                use_cache=True, suppress_tokens=suppress,
            )
        times["generate"] = clock() - t

        prompt_len = inputs["input_ids"].shape[1]
        completion = out[:, prompt_len:]
        rows, new = completion.shape
        # TRL's mask: each row's tokens up to and including its first EOS.
        is_eos = torch.isin(completion, torch.tensor(eos, device=device))
        first = torch.full((rows,), new, dtype=torch.long, device=device)
        any_eos = is_eos.any(dim=1)
        first[any_eos] = is_eos.int().argmax(dim=1)[any_eos]
        completion_mask = (torch.arange(new, device=device).expand(rows, -1) <= first.unsqueeze(1)).long()
        prompt_mask = inputs["attention_mask"].repeat_interleave(group, dim=0)
        types = inputs["mm_token_type_ids"].repeat_interleave(group, dim=0)
        batch = dict(
            input_ids=out,
            attention_mask=torch.cat([prompt_mask, completion_mask], dim=1),
            mm_token_type_ids=torch.cat([types, torch.zeros_like(completion)], dim=1),
            pixel_values_videos=pixel,
            video_grid_thw=grid,
        )

        t = clock()
        with torch.no_grad():
            ref_logps = per_token_logps(reference, batch, completion)
        times["reference"] = clock() - t

        # A fixed reward of the sampled ids; group-normalised advantages.
        rewards = (completion[:, 0] % 5).float() / 4.0
        grouped = rewards.view(-1, group)
        mean = grouped.mean(dim=1).repeat_interleave(group)
        std = grouped.std(dim=1).repeat_interleave(group)
        advantages = (rewards - mean) / (std + 1e-4)

        t = clock()
        policy.train()
        logps = per_token_logps(policy, batch, completion)
        old = logps.detach()
        ratio = torch.exp(logps - old)
        a = advantages.unsqueeze(1)
        surrogate = torch.min(ratio * a, torch.clamp(ratio, 1 - args.epsilon, 1 + args.epsilon) * a)
        delta = ref_logps - logps
        kl = torch.exp(delta) - delta - 1
        per_token = -(surrogate - args.beta * kl)
        mask = completion_mask.float()
        loss = (per_token * mask).sum() / mask.sum().clamp(min=1.0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times["update"] = clock() - t
        times["step"] = clock() - start
        times["completion_tokens"] = int(completion_mask.sum())
        return times, rows, new

    step()  # warm-up
    steps = []
    for i in range(args.steps):
        times, rows, new = step()
        steps.append(times)
        print(
            f"step {i + 1}: " + ", ".join(
                f"{k} {v:.2f} s" if isinstance(v, float) else f"{k} {v}" for k, v in times.items()
            ),
            file=sys.stderr,
        )
    print(
        f"transformers {transformers.__version__}, torch {torch.__version__}, "
        f"{args.device}, {torch.get_num_threads()} CPU threads, {rows} rows × {new} new tokens"
    )
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    print("RESULT " + json.dumps({"steps": steps, "rows": rows, "peak_rss_bytes": peak}))


if __name__ == "__main__":
    main()
