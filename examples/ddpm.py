"""A denoising diffusion probabilistic model (DDPM, Ho, Jain & Abbeel 2020) on 2-D toy data.

The forward process adds Gaussian noise over T steps,
    q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I),   abar_t = prod_{s<=t} (1 - beta_s),
with a linear (scaled to T, as in Nichol & Dhariwal 2021) or cosine beta schedule. A small
network eps_theta(x_t, t) (an MLP with residual blocks and a sinusoidal time embedding) is
trained with the simple loss E ||eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t)||^2,
and samples are drawn by ancestral sampling from x_T ~ N(0, I):
    x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps_theta(x_t, t)) / sqrt(alpha_t) + sigma_t z,
with sigma_t^2 the posterior variance beta_t (1 - abar_{t-1}) / (1 - abar_t).

Quality is measured on fresh held-out data with two distances written here in NumPy: the
energy distance (Szekely & Rizzo; the unbiased estimate, so it scatters around zero, slightly
negative included, when the two samples come from the same law) and the sliced Wasserstein-1
distance. Each is reported for the generated samples, for pure Gaussian noise (the sampler's
starting point, the baseline to beat), and for a second independent draw of real data (the
floor set by sampling error).

    python examples/ddpm.py                               # two moons, ~1-2 min on 2 cores
    python examples/ddpm.py --dataset ring --steps 6000 --out runs/ddpm/ring.png
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import time

import numpy as np

import chainrule as cr
import chainrule.nn.functional as F
from chainrule import nn, optim

# --------------------------------------------------------------------------- data


def make_data(name: str, n: int, seed: int) -> np.ndarray:
    """``n`` points of a 2-D toy distribution, standardised to about zero mean, unit variance.

    ``moons``: two interleaved half circles with Gaussian jitter 0.05 (as scikit-learn's
    make_moons). ``ring``: eight Gaussians (std 0.1) on a circle of radius 2.

    Example:
        >>> make_data("moons", 5, seed=0).shape
        (5, 2)
    """
    rng = np.random.default_rng(seed)
    if name == "moons":
        upper = rng.random(n) < 0.5
        a = rng.random(n) * math.pi
        x = np.where(upper, np.cos(a), 1.0 - np.cos(a))
        y = np.where(upper, np.sin(a), 0.5 - np.sin(a))
        pts = np.stack([x, y], axis=1) + 0.05 * rng.standard_normal((n, 2))
        pts = (pts - np.array([0.5, 0.25])) / np.array([0.87, 0.5])
    elif name == "ring":
        k = rng.integers(0, 8, n)
        ang = k * (2 * math.pi / 8)
        centres = 2.0 * np.stack([np.cos(ang), np.sin(ang)], axis=1)
        pts = (centres + 0.1 * rng.standard_normal((n, 2))) / 1.42
    else:
        raise ValueError(f"make_data: unknown dataset {name!r} (expected 'moons' or 'ring')")
    return pts.astype(np.float32)


# --------------------------------------------------------------------------- distances


def _pairwise_mean_dist(a: np.ndarray, b: np.ndarray, same: bool) -> float:
    """Mean Euclidean distance between rows of a and rows of b (off-diagonal if ``same``)."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    d = np.sqrt(np.maximum(sq, 0.0))
    if same:
        n = len(a)
        return float(d.sum() / (n * (n - 1)))  # the diagonal is zero: U-statistic
    return float(d.mean())


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Squared energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| (zero iff same law),
    estimated without bias (the within-sample means leave out the zero diagonal), so it can
    come out slightly negative for two samples of one law.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> near = energy_distance(rng.normal(size=(500, 2)), rng.normal(size=(500, 2)))
        >>> far = energy_distance(rng.normal(size=(500, 2)), rng.normal(size=(500, 2)) + 2)
        >>> bool(abs(near) < 0.02 < far)
        True
    """
    return (2.0 * _pairwise_mean_dist(x, y, False) - _pairwise_mean_dist(x, x, True)
            - _pairwise_mean_dist(y, y, True))


def sliced_wasserstein(x: np.ndarray, y: np.ndarray, n_proj: int = 256, seed: int = 0) -> float:
    """Sliced Wasserstein-1 distance: W1 between 1-D projections, averaged over ``n_proj``
    random directions (equal sample sizes).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> round(sliced_wasserstein(np.zeros((100, 2)), np.zeros((100, 2))), 6)
        0.0
    """
    if len(x) != len(y):
        raise ValueError(f"sliced_wasserstein: needs equal sample sizes, got {len(x)} and "
                         f"{len(y)}")
    theta = np.random.default_rng(seed).standard_normal((x.shape[1], n_proj))
    theta /= np.linalg.norm(theta, axis=0, keepdims=True)
    px = np.sort(x.astype(np.float64) @ theta, axis=0)
    py = np.sort(y.astype(np.float64) @ theta, axis=0)
    return float(np.abs(px - py).mean())


# --------------------------------------------------------------------------- diffusion


def make_schedule(T: int, kind: str = "linear") -> dict[str, np.ndarray]:
    """The betas and the quantities derived from them (float64 arrays of length T; entry i is
    diffusion step t = i + 1).

    ``linear``: betas from 1e-4 to 0.02 scaled by 1000 / T (so short chains still end at
    noise); ``cosine``: abar_t = cos^2((t/T + s) / (1 + s) pi/2), s = 0.008. Either way the
    betas are clipped at 0.999.

    Example:
        >>> s = make_schedule(100)
        >>> bool(s["abar"][-1] < 1e-3), s["betas"].shape
        (True, (100,))
    """
    if not isinstance(T, int) or T < 2:
        raise ValueError(f"make_schedule: T must be an integer of at least 2, got {T!r}")
    if kind == "linear":
        scale = 1000.0 / T
        betas = np.clip(np.linspace(1e-4 * scale, 0.02 * scale, T), 0.0, 0.999)
    elif kind == "cosine":
        s = 0.008
        steps = np.arange(T + 1) / T
        f = np.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        betas = np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
    else:
        raise ValueError(f"make_schedule: unknown schedule {kind!r} (expected 'linear' or "
                         "'cosine')")
    alphas = 1.0 - betas
    abar = np.cumprod(alphas)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    return {
        "betas": betas, "alphas": alphas, "abar": abar,
        "sqrt_abar": np.sqrt(abar), "sqrt_1m_abar": np.sqrt(1.0 - abar),
        "post_var": betas * (1.0 - abar_prev) / (1.0 - abar),
    }


def timestep_embedding(t: cr.Tensor, dim: int, max_period: float = 10000.0) -> cr.Tensor:
    """Sinusoidal embedding of integer steps t (Vaswani et al.): [sin(t w_k), cos(t w_k)],
    w_k = max_period^(-k / (dim/2)), computed in float64 and returned in float32. Tensor ops
    (not NumPy), so that a step under ``chainrule.jit`` recomputes it for each call's ``t``.

    Example:
        >>> timestep_embedding(cr.tensor([0, 5]), 8).shape
        (2, 8)
    """
    half = dim // 2
    freqs = cr.from_numpy(np.exp(-math.log(max_period) * np.arange(half) / half))
    ang = t.double()[:, None] * freqs[None, :]
    return cr.cat([ang.sin(), ang.cos()], dim=1).float()


class ResBlock(nn.Module):
    """h + W2 silu(W1 LayerNorm(h) + E t_emb): a residual MLP block conditioned on the step."""

    def __init__(self, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.temb = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, h, temb):
        return h + self.fc2(F.silu(self.fc1(self.norm(h)) + self.temb(temb)))


class Denoiser(nn.Module):
    """eps_theta(x_t, t): predicts the noise in x_t from x_t and the step t (0-based index).

    Example:
        >>> net = Denoiser(hidden=32, blocks=2)
        >>> net(cr.zeros(4, 2), cr.tensor([0, 1, 2, 3])).shape
        (4, 2)
    """

    def __init__(self, dim: int = 2, hidden: int = 128, blocks: int = 3, emb_dim: int = 64):
        super().__init__()
        self.emb_dim = emb_dim
        self.t_mlp = nn.Sequential(nn.Linear(emb_dim, hidden), nn.SiLU(),
                                   nn.Linear(hidden, hidden), nn.SiLU())
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList([ResBlock(hidden) for _ in range(blocks)])
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, dim)

    def forward(self, x, t: cr.Tensor):
        temb = self.t_mlp(timestep_embedding(t, self.emb_dim))
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, temb)
        return self.out(F.silu(self.norm(h)))


@cr.no_grad()
def sample(model: Denoiser, sched: dict, n: int, seed: int, dim: int = 2) -> np.ndarray:
    """Ancestral sampling: n points from x_T ~ N(0, I) down to x_0 (float32 array (n, dim)).

    Example:
        >>> sample(Denoiser(hidden=16, blocks=1), make_schedule(20), 3, seed=0).shape
        (3, 2)
    """
    rng = np.random.default_rng(seed)
    T = len(sched["betas"])
    x = rng.standard_normal((n, dim)).astype(np.float32)
    coef = sched["betas"] / sched["sqrt_1m_abar"]
    for i in range(T - 1, -1, -1):
        eps = model(cr.from_numpy(x), cr.from_numpy(np.full(n, i))).numpy()
        mean = (x - coef[i] * eps) / math.sqrt(sched["alphas"][i])
        if i > 0:
            mean = mean + math.sqrt(sched["post_var"][i]) * rng.standard_normal((n, dim))
        x = mean.astype(np.float32)
    return x


def train(steps: int = 4000, batch_size: int = 256, lr: float = 2e-3, hidden: int = 128,
          blocks: int = 3, T: int = 100, schedule: str = "linear", dataset: str = "moons",
          n_train: int = 10000, seed: int = 0, log_every: int = 500, verbose: bool = True,
          jit: bool = False):
    """Train a denoiser; return ``(model, schedule, losses)``, losses one float per step.

    Adam with a cosine learning-rate decay; each step draws a batch of training points, steps
    t uniformly from 1..T and fresh noise, all from a NumPy generator seeded with ``seed``.
    ``jit=True`` captures the training step with ``chainrule.jit`` and replays it.

    Example:
        >>> _, _, losses = train(steps=5, hidden=16, blocks=1, verbose=False)
        >>> len(losses)
        5
    """
    cr.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = make_data(dataset, n_train, seed=seed)
    sched = make_schedule(T, schedule)
    sa = sched["sqrt_abar"].astype(np.float32)
    s1 = sched["sqrt_1m_abar"].astype(np.float32)
    model = Denoiser(data.shape[1], hidden, blocks)
    opt = optim.Adam(model.parameters(), lr=lr)
    lr_sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * 0.05)

    def train_step(xt, t, eps):
        opt.zero_grad()
        loss = F.mse_loss(model(xt, t), eps)
        loss.backward()
        opt.step()
        return loss

    if jit:
        train_step = cr.jit(train_step)
    losses = []
    t0 = time.process_time()
    for step in range(1, steps + 1):
        x0 = data[rng.integers(0, len(data), batch_size)]
        t = rng.integers(0, T, batch_size)
        eps = rng.standard_normal(x0.shape).astype(np.float32)
        xt = sa[t, None] * x0 + s1[t, None] * eps
        loss = train_step(cr.from_numpy(xt), cr.from_numpy(t), cr.from_numpy(eps))
        lr_sched.step()
        losses.append(loss.item())
        if verbose and (step % log_every == 0 or step == 1):
            recent = np.mean(losses[-log_every:])
            print(f"step {step:5d}  loss {recent:.4f}  cpu {time.process_time() - t0:6.1f}s",
                  flush=True)
    return model, sched, losses


def evaluate(model: Denoiser, sched: dict, dataset: str, n: int = 2000, seed: int = 0) -> dict:
    """Distances to a fresh held-out draw of real data: generated samples, N(0, I) noise and a
    second real draw. Returns the distances and the generated samples.

    Example:
        >>> r = evaluate(Denoiser(hidden=16, blocks=1), make_schedule(20), "moons", n=50)
        >>> sorted(r["energy"])
        ['data', 'model', 'noise']
    """
    real = make_data(dataset, n, seed=10_000 + seed)   # held out: never seen in training
    real2 = make_data(dataset, n, seed=20_000 + seed)  # the data against itself, for scale
    noise = np.random.default_rng(30_000 + seed).standard_normal((n, 2)).astype(np.float32)
    gen = sample(model, sched, n, seed=40_000 + seed)
    cands = {"model": gen, "noise": noise, "data": real2}
    return {
        "energy": {k: energy_distance(v, real) for k, v in cands.items()},
        "sliced_w1": {k: sliced_wasserstein(v, real) for k, v in cands.items()},
        "samples": gen, "real": real,
    }


def save_plot(path: str, real: np.ndarray, gen: np.ndarray, losses: list, title: str) -> None:
    """Real vs generated scatter plots and the loss curve, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(12, 4))
    lim = (-3, 3)
    for a, pts, name in ((ax[0], real, "real (held out)"), (ax[1], gen, "DDPM samples")):
        a.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5)
        a.set(xlim=lim, ylim=lim, title=name, aspect="equal")
    k = max(1, len(losses) // 100)
    smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
    ax[2].plot(np.arange(len(smooth)) + k, smooth)
    ax[2].set(xlabel="step", ylabel="epsilon MSE", title="training loss")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description="DDPM on 2-D toy data")
    ap.add_argument("--dataset", choices=["moons", "ring"], default="moons")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--T", type=int, default=100, help="diffusion steps")
    ap.add_argument("--schedule", choices=["linear", "cosine"], default="linear")
    ap.add_argument("--n-eval", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jit", action="store_true",
                    help="capture the training step with chainrule.jit and replay it")
    ap.add_argument("--out", default="runs/ddpm/samples.png", help="PNG of samples ('' for none)")
    args = ap.parse_args(argv)
    if args.out and importlib.util.find_spec("matplotlib") is None:
        print("matplotlib is not installed, so no PNG will be written "
              "(pip install -e '.[plot]' for it; --out '' silences this)")
        args.out = ""

    t0 = time.process_time()
    model, sched, losses = train(args.steps, args.batch_size, args.lr, args.hidden, args.blocks,
                                 args.T, args.schedule, args.dataset, seed=args.seed,
                                 jit=args.jit)
    r = evaluate(model, sched, args.dataset, args.n_eval, seed=args.seed)
    cpu = time.process_time() - t0
    e, w = r["energy"], r["sliced_w1"]
    print(f"loss: first 100 steps {np.mean(losses[:100]):.4f}, "
          f"last 100 {np.mean(losses[-100:]):.4f}")
    print(f"{'vs held-out real data':<24}{'energy distance':>16}{'sliced W1':>11}")
    for k, label in (("model", "DDPM samples"), ("noise", "N(0, I) noise (baseline)"),
                     ("data", "real data (floor)")):
        print(f"{label:<24}{e[k]:>16.4f}{w[k]:>11.4f}")
    if args.out:
        save_plot(args.out, r["real"], r["samples"], losses,
                  f"DDPM on {args.dataset}: T={args.T}, {args.steps} steps. Distance to held-out"
                  f" data, samples / noise / real: energy {e['model']:.4f} / {e['noise']:.4f}"
                  f" / {e['data']:.4f}, sliced W1 {w['model']:.3f} / {w['noise']:.3f} / "
                  f"{w['data']:.3f}")
        print(f"samples: {args.out}")
    print(f"energy distance: {e['model']:.4f} (noise {e['noise']:.4f}, real data "
          f"{e['data']:.4f}); sliced W1: {w['model']:.4f} (noise {w['noise']:.4f}, real data "
          f"{w['data']:.4f}); cpu {cpu:.0f}s")
    return {"losses": losses, "energy": e, "sliced_w1": w}


if __name__ == "__main__":
    main()
