#!/usr/bin/env python3
"""Writes the golden numbers the Rust tests in tests/golden_*.rs compare with.

The formulas here are written independently of the Rust code, after verl's
`verl/trainer/ppo/core_algos.py` (compute_grpo_outcome_advantage,
compute_policy_loss_vanilla, kl_penalty, agg_loss) and TRL's `GRPOTrainer`
(scale_rewards="batch", clip-ratio metrics, loss_type="dr_grpo"), in float64
on float32 inputs. Correlations come from scipy.stats.

Usage (numpy and scipy only; no torch needed):
    python3 -m venv /tmp/golden-venv && /tmp/golden-venv/bin/pip install numpy scipy
    /tmp/golden-venv/bin/python tests/golden/make_golden.py
Run from anywhere; it writes next to itself. Seeded: reruns give the same files.
"""

import json
import os

import numpy as np
from scipy import stats

OUT = os.path.dirname(os.path.abspath(__file__))
EPS = 1e-6


def f32(a):
    """Round to float32 and return float64 (the exact f32 values)."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def tolist(a):
    return [float(x) for x in np.asarray(a).ravel()]


# ---------------------------------------------------------------- advantages


def grpo_advantages(rewards, group_size, scale, eps=EPS):
    """verl compute_grpo_outcome_advantage (scale group/none), TRL batch."""
    r = rewards.reshape(-1, group_size)
    mean = r.mean(axis=1, keepdims=True)
    std = r.std(axis=1, ddof=1, keepdims=True)  # torch.std is unbiased
    if scale == "group":
        adv = (r - mean) / (std + eps)
    elif scale == "none":
        adv = r - mean
    elif scale == "batch":
        adv = (r - mean) / (rewards.std(ddof=1) + eps)
    else:
        raise ValueError(scale)
    zero = np.isclose(std[:, 0], 0.0)
    return adv.ravel(), float(zero.mean())


def advantage_cases(rng):
    cases = []
    levels = np.array([0.0, 0.5, 1.0, 1.5])
    for group_size, n_groups in [(8, 6), (4, 5), (2, 7)]:
        rewards = levels[rng.integers(0, 4, size=(n_groups, group_size))]
        rewards[1, :] = 1.5  # one all-correct group
        rewards[-1, :] = 0.0  # one all-wrong group
        rewards = rewards.ravel()
        for scale in ["group", "batch", "none"]:
            adv, frac = grpo_advantages(rewards, group_size, scale)
            cases.append(
                dict(
                    group_size=group_size,
                    scale=scale,
                    epsilon=EPS,
                    rewards=tolist(rewards),
                    advantages=tolist(adv),
                    frac_reward_zero_std=frac,
                )
            )
    return cases


# --------------------------------------------------------------- policy loss


def masked_mean(x, m):
    return float((x * m).sum() / m.sum())


def agg(x, m, mode, max_len):
    if mode == "token-mean":
        return float((x * m).sum() / m.sum())
    if mode == "seq-mean-token-mean":
        return float(((x * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)).mean())
    if mode == "seq-mean-token-sum-norm":  # TRL dr_grpo: / (B * max_completion_length)
        return float((x * m).sum() / (x.shape[0] * max_len))
    raise ValueError(mode)


def agg_weights(m, mode, max_len):
    """d agg / d x_bt: the weight of each token in the aggregate."""
    b = m.shape[0]
    if mode == "token-mean":
        return m / m.sum()
    if mode == "seq-mean-token-mean":
        return m / (b * np.maximum(m.sum(axis=1, keepdims=True), 1.0))
    if mode == "seq-mean-token-sum-norm":
        return m / (b * max_len)
    raise ValueError(mode)


def kl_penalty(logp, ref, estimator):
    """verl kl_penalty: kl (k1), mse (k2), low_var_kl (k3)."""
    if estimator == "k1":
        return logp - ref
    if estimator == "k2":
        return 0.5 * (logp - ref) ** 2
    if estimator == "k3":
        kl = ref - logp
        kld = np.exp(kl) - kl - 1
        # verl clamps k3 to [-10, 10]; the cases stay well inside, so the
        # unclamped TRL form is the same number.
        assert np.all(np.abs(kld) < 10)
        return kld
    raise ValueError(estimator)


def kl_grad(logp, ref, estimator):
    if estimator == "k1":
        return np.ones_like(logp)
    if estimator == "k2":
        return logp - ref
    if estimator == "k3":
        return 1.0 - np.exp(ref - logp)
    raise ValueError(estimator)


def policy_loss(logp, old, ref, adv, m, clip_low, clip_high, dual_clip, kl_coef, estimator, mode, max_len):
    """verl compute_policy_loss_vanilla + kl loss, TRL metrics; plus the
    analytic gradient of the loss with respect to logp."""
    a = adv[:, None] * np.ones_like(logp)
    neg_kl = np.clip(logp - old, -20.0, 20.0)
    ratio = np.exp(neg_kl)
    pg1 = -a * ratio
    pg2 = -a * np.clip(ratio, 1 - clip_low, 1 + clip_high)
    clip_pg1 = np.maximum(pg1, pg2)
    # d pg / d logp: the unclipped branch has -A·ρ; the clipped branch only
    # wins when ρ is outside the clip range, where its gradient is 0.
    grad_pg = np.where(pg1 >= pg2, -a * ratio, 0.0)
    if dual_clip is not None:
        pg3 = -a * dual_clip
        clip_pg2 = np.minimum(pg3, clip_pg1)
        pg = np.where(a < 0, clip_pg2, clip_pg1)
        dual_active = (clip_pg1 > pg3) & (a < 0)
        grad_pg = np.where(dual_active, 0.0, grad_pg)
        dual_frac = masked_mean(dual_active.astype(np.float64), m)
    else:
        pg = clip_pg1
        dual_frac = 0.0
    w = agg_weights(m, mode, max_len)
    pg_loss = agg(pg, m, mode, max_len)
    grad = grad_pg * w
    loss = pg_loss
    kl_mean = None
    if ref is not None and kl_coef > 0:
        kl = kl_penalty(logp, ref, estimator)
        loss = pg_loss + kl_coef * agg(kl, m, mode, max_len)
        grad = grad + kl_coef * kl_grad(logp, ref, estimator) * w
        kl_mean = masked_mean(kl, m)
    low = (ratio < 1 - clip_low) & (a < 0)
    high = (ratio > 1 + clip_high) & (a > 0)
    return dict(
        loss=loss,
        pg_loss=pg_loss,
        kl=kl_mean,
        clip_ratio_low=masked_mean(low.astype(np.float64), m),
        clip_ratio_high=masked_mean(high.astype(np.float64), m),
        dual_clip_frac=dual_frac,
        ppo_kl=masked_mean(-neg_kl, m),
        grad=tolist(grad),
    )


def policy_loss_cases(rng):
    b, t = 6, 7
    settings = []
    for mode in ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]:
        for dual in [None, 3.0]:
            settings.append(dict(mode=mode, dual_clip=dual, estimator="k3", kl_coef=0.04, clip_low=0.2, clip_high=0.2))
    for est in ["k1", "k2"]:
        settings.append(dict(mode="token-mean", dual_clip=None, estimator=est, kl_coef=0.1, clip_low=0.2, clip_high=0.2))
    # Clip-higher (DAPO) without a KL term.
    settings.append(dict(mode="token-mean", dual_clip=3.0, estimator="k3", kl_coef=0.0, clip_low=0.2, clip_high=0.28))
    cases = []
    for s in settings:
        old = f32(-rng.uniform(0.05, 3.0, size=(b, t)))
        # Wide spread of ratios so every clip branch (and the dual clip at
        # c = 3) is exercised.
        logp = f32(old + rng.normal(0.0, 1.0, size=(b, t)))
        ref = f32(logp + rng.normal(0.0, 0.3, size=(b, t)))
        adv = f32(rng.normal(0.0, 1.0, size=b))
        lengths = rng.integers(1, t + 1, size=b)
        m = (np.arange(t)[None, :] < lengths[:, None]).astype(np.float64)
        max_len = 10
        ref_in = ref if s["kl_coef"] > 0 else None
        out = policy_loss(
            logp, old, ref_in, adv, m, s["clip_low"], s["clip_high"], s["dual_clip"], s["kl_coef"], s["estimator"], s["mode"], max_len
        )
        cases.append(
            dict(
                batch=b,
                tokens=t,
                aggregation=s["mode"],
                max_len=max_len,
                clip_low=s["clip_low"],
                clip_high=s["clip_high"],
                dual_clip=s["dual_clip"],
                kl_coef=s["kl_coef"],
                kl_estimator=s["estimator"],
                log_probs=tolist(logp),
                old_log_probs=tolist(old),
                ref_log_probs=tolist(ref) if ref_in is not None else None,
                advantages=tolist(adv),
                mask=[bool(x) for x in m.ravel()],
                **out,
            )
        )
    return cases


# ------------------------------------------------------------ logits & score


def log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def logits_cases(rng):
    cases = []
    for temperature in [1.0, 0.7]:
        b, t, v = 2, 3, 7
        logits = f32(rng.normal(0.0, 2.0, size=(b, t, v)))
        tokens = rng.integers(0, v, size=(b, t))
        lp = log_softmax(logits / temperature)
        chosen = np.take_along_axis(lp, tokens[..., None], axis=-1)[..., 0]
        entropy = -(np.exp(lp) * lp).sum(axis=-1)
        cases.append(
            dict(
                batch=b,
                tokens=t,
                vocab=v,
                temperature=temperature,
                logits=tolist(logits),
                token_ids=[int(x) for x in tokens.ravel()],
                log_probs=tolist(chosen),
                entropy=tolist(entropy),
            )
        )
    return cases


def score_cases(rng):
    weights = np.array([0.0, 0.25, 0.5, 0.75, 1.0])  # Bad .. Excellent
    logits = f32(rng.normal(0.0, 2.0, size=(8, 5)))
    p = np.exp(log_softmax(logits))
    return dict(rating_logits=tolist(logits), scores=tolist(p @ weights))


# --------------------------------------------------------------- correlations


def correlation_cases(rng):
    cases = []
    for n, decimals in [(12, 1), (40, 1), (40, 3), (200, 2)]:
        truth = np.round(rng.uniform(1.0, 5.0, size=n), decimals)
        pred = np.round(0.15 * truth + rng.normal(0.0, 0.15, size=n), decimals)
        cases.append(
            dict(
                pred=tolist(pred),
                truth=tolist(truth),
                srcc=float(stats.spearmanr(pred, truth).statistic),
                plcc=float(stats.pearsonr(pred, truth).statistic),
                krcc=float(stats.kendalltau(pred, truth, variant="b").statistic),
            )
        )
    return cases


def pairwise(pred, truth, pred_tau, truth_tau):
    """The fixed-threshold definition documented in src/eval/metrics.rs, in
    VideoAlign's sufficient-statistics form."""
    n = len(pred)
    c_with = n_pairs = c_without = decided = 0
    for i in range(n):
        for j in range(i + 1, n):
            dt, dp = truth[i] - truth[j], pred[i] - pred[j]
            h = 0 if abs(dt) <= truth_tau else int(np.sign(dt))
            m = 0 if abs(dp) < pred_tau else int(np.sign(dp))
            n_pairs += 1
            c_with += int(h == m)
            if h != 0:
                decided += 1
                c_without += int(np.sign(dp) == h)
    return c_with / n_pairs, (c_without / decided) if decided else None


def pairwise_cases(rng):
    cases = []
    for n, pred_tau, truth_tau in [(20, 0.05, 0.0), (30, 0.05, 0.25), (25, 0.0, 0.0)]:
        truth = np.round(rng.uniform(1.0, 5.0, size=n) * 2) / 2  # half-point MOS, many ties
        pred = rng.uniform(0.0, 1.0, size=n) * 0.5 + (truth - 1) / 8
        with_ties, without_ties = pairwise(pred, truth, pred_tau, truth_tau)
        cases.append(
            dict(
                pred=tolist(pred),
                truth=tolist(truth),
                pred_tie_threshold=pred_tau,
                truth_tie_threshold=truth_tau,
                with_ties=with_ties,
                without_ties=without_ties,
            )
        )
    return cases


def write(name, payload):
    path = os.path.join(OUT, name)
    with open(path, "w") as f:
        json.dump(payload, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def main():
    write("advantages.json", advantage_cases(np.random.default_rng(1)))
    write("policy_loss.json", policy_loss_cases(np.random.default_rng(2)))
    write("logits.json", dict(log_probs=logits_cases(np.random.default_rng(3)), score=score_cases(np.random.default_rng(4))))
    write("metrics.json", dict(correlations=correlation_cases(np.random.default_rng(5)), pairwise=pairwise_cases(np.random.default_rng(6))))


if __name__ == "__main__":
    main()
