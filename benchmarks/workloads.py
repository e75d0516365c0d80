"""The benchmark workloads, each defined once: seeded NumPy data and one step per library family.

A workload is the data (weights, inputs, targets: NumPy arrays drawn from a fixed seed, so every
library starts from the same numbers) and a builder per library *family*:

* ``torchlike``: chainrule and PyTorch (eager or compiled) run the same model code, written
  against the namespace a library adapter gives (``ns.nn``, ``ns.F``, ``ns.optim``,
  ``ns.tensor``, ``ns.compile``, ...; see ``libs.py``);
* ``jax``: the same model in JAX's functional style (``jax.jit`` of the whole update);
* ``numpy``: the hand-written forward and backward pass, the floor for what a NumPy program
  can reach.

A builder returns ``(steps, check)``: ``steps`` maps ``"main"`` (the timed step) and, for
some workloads, extra products timed in the same process (for ratios within one library) to
zero-argument callables; ``check(out)`` turns what the main step returned into the floats
that must agree across libraries (losses of the first ``check_steps`` training steps, or the
Hessian-vector product's ``v.Hv`` and ``|Hv|_1``).

    >>> sorted(WORKLOADS)
    ['hvp', 'lenet', 'lstm', 'mlp', 'tiny', 'transformer']
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Workload:
    """One workload: a title for the tables and its builders by library family."""

    name: str
    title: str
    builders: dict = field(default_factory=dict)
    check_steps: int = 3  # main-step calls whose check values are compared


WORKLOADS: dict[str, Workload] = {}


def _register(name: str, title: str, check_steps: int = 3) -> Workload:
    WORKLOADS[name] = w = Workload(name, title, check_steps=check_steps)
    return w


def builder(workload: str, family: str):
    """Register ``fn(ns) -> (steps, check)`` as ``workload``'s builder for ``family``."""

    def deco(fn):
        WORKLOADS[workload].builders[family] = fn
        return fn

    return deco


def build(workload: str, ns) -> tuple:
    """``(steps, check)`` of ``workload`` for the library namespace ``ns`` (``libs.load``)."""
    w = WORKLOADS[workload]
    if ns.family not in w.builders:
        raise KeyError(f"workload {workload!r} has no {ns.family} version")
    return w.builders[ns.family](ns)


def _rng(seed: int = 0):
    return np.random.default_rng(seed)


def _uniform(rng, fan_in: int, shape) -> np.ndarray:
    bound = 1 / fan_in ** 0.5
    return rng.uniform(-bound, bound, shape).astype(np.float32)


def _l1(arrays) -> float:
    return float(sum(np.abs(np.asarray(a, np.float64)).sum() for a in arrays))


# ---------------------------------------------------------------- torchlike / jax helpers
def _tl_train(ns, loss_fn, opt) -> dict:
    """A training step for chainrule or PyTorch: ``loss_fn()`` (compiled by the adapter where
    it compiles), backward, one optimizer step; returns the loss. The whole step goes through
    ``ns.compile_step`` (chainrule.jit for chainrule-jit, identity otherwise)."""
    loss_fn = ns.compile(loss_fn)

    def step():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        return loss

    return {"main": ns.compile_step(step)}


def _tl_losses(ns):
    return lambda loss: [ns.item(loss)]


def _jax_train(ns, loss_fn, params, update) -> tuple:
    """A jitted training step for JAX: ``loss_fn(params)`` and its gradient, then
    ``update(params, grads, state) -> (params, state)``; returns the loss."""
    import jax

    def full(ps, state):
        loss, gs = jax.value_and_grad(loss_fn)(ps)
        ps, state = update(ps, gs, state)
        return loss, ps, state

    full = jax.jit(full, donate_argnums=(0, 1))
    carry = [[ns.tensor(p) for p in params], None]
    carry[1] = jax.tree_util.tree_map(lambda p: p * 0, carry[0])  # optimizer state

    def step():
        loss, carry[0], carry[1] = full(carry[0], carry[1])
        return loss.block_until_ready()

    return {"main": step}, lambda loss: [float(loss)]


def _jax_sgd(lr):
    def update(ps, gs, state):
        return [p - lr * g for p, g in zip(ps, gs)], state

    return update


# ---------------------------------------------------------------- tiny-op chain
TINY_N, TINY_SIZE = 200, 16
_register("tiny", f"tiny-op chain ({TINY_SIZE}-vector, {TINY_N} ops, backward)", check_steps=1)


def _tiny_chain(x, tanh):
    """The chain: times 1.1, plus 0.1, tanh, repeated; summed."""
    for i in range(TINY_N):
        k = i % 3
        x = x * 1.1 if k == 0 else (x + 0.1 if k == 1 else tanh(x))
    return x.sum()


def _tiny_data() -> np.ndarray:
    return _rng().standard_normal(TINY_SIZE).astype(np.float32)


@builder("tiny", "torchlike")
def _tiny_tl(ns):
    x0 = ns.tensor(_tiny_data(), requires_grad=True)
    f = ns.compile(lambda x: _tiny_chain(x, lambda t: t.tanh()))

    def step():
        y = f(x0)
        y.backward()
        g, x0.grad = x0.grad, None
        return y, g

    return {"main": ns.compile_step(step)}, lambda out: [ns.item(out[0]), _l1([ns.np(out[1])])]


@builder("tiny", "jax")
def _tiny_jax(ns):
    import jax
    import jax.numpy as jnp

    x0 = ns.tensor(_tiny_data())
    f = jax.jit(jax.value_and_grad(lambda x: _tiny_chain(x, jnp.tanh)))

    def step():
        return jax.block_until_ready(f(x0))

    return {"main": step}, lambda out: [float(out[0]), _l1([out[1]])]


@builder("tiny", "numpy")
def _tiny_np(ns):
    x0 = _tiny_data()
    a, c = np.float32(1.1), np.float32(0.1)

    def step():
        x, saved = x0, []
        for i in range(TINY_N):
            k = i % 3
            if k == 0:
                x = x * a
            elif k == 1:
                x = x + c
            else:
                x = np.tanh(x)
                saved.append(x)
        y = x.sum()
        g = np.ones_like(x)
        for i in reversed(range(TINY_N)):
            k = i % 3
            if k == 0:
                g = g * a
            elif k == 2:
                s = saved.pop()
                g = g * (1 - s * s)
        return y, g

    return {"main": step}, lambda out: [float(out[0]), _l1([out[1]])]


# ---------------------------------------------------------------- MLP step
MLP_SIZES, MLP_BATCH, MLP_LR = (784, 512, 512, 10), 128, 0.01
_register("mlp", "MLP 784-512-512-10 SGD step, batch 128")


def mlp_data(seed: int = 0):
    """Inputs, labels and the six parameters (w1, b1, w2, b2, w3, b3) of the MLP."""
    rng = _rng(seed)
    x = rng.standard_normal((MLP_BATCH, MLP_SIZES[0])).astype(np.float32)
    y = rng.integers(0, MLP_SIZES[-1], MLP_BATCH)
    ps = []
    for a, b in zip(MLP_SIZES[:-1], MLP_SIZES[1:]):
        ps += [_uniform(rng, a, (b, a)), _uniform(rng, a, b)]
    return x, y, ps


def _mlp_logits(F, x, ps):
    h = x
    n = len(ps) // 2
    for i in range(n):
        h = F.linear(h, ps[2 * i], ps[2 * i + 1])
        if i < n - 1:
            h = F.relu(h)
    return h


def _mlp_loss(F, x, y, ps):
    return F.cross_entropy(_mlp_logits(F, x, ps), y)


def _sgd_builders(name: str, data, loss, lr: float) -> None:
    """Register the chainrule/PyTorch and JAX builders of a workload whose model is a list
    of parameters: ``data() -> (x, y, params)``, ``loss(F, x, y, params)``, one SGD step."""

    @builder(name, "torchlike")
    def _tl(ns):
        x, y, ps = data()
        X, Y = ns.tensor(x), ns.tensor(y)
        params = [ns.tensor(p, requires_grad=True) for p in ps]
        opt = ns.optim.SGD(params, lr=lr)
        return _tl_train(ns, lambda: loss(ns.F, X, Y, params), opt), _tl_losses(ns)

    @builder(name, "jax")
    def _jax(ns):
        x, y, ps = data()
        X, Y = ns.tensor(x), ns.tensor(y)
        return _jax_train(ns, lambda p: loss(ns.F, X, Y, p), ps, _jax_sgd(lr))


_sgd_builders("mlp", mlp_data, _mlp_loss, MLP_LR)


def _np_softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


@builder("mlp", "numpy")
def _mlp_np(ns):
    x, y, ps = mlp_data()
    ws, bs = ps[0::2], ps[1::2]
    lr, n, rows = np.float32(MLP_LR), x.shape[0], np.arange(x.shape[0])

    def step():
        hs, h = [x], x
        for i, (w, b) in enumerate(zip(ws, bs)):
            h = h @ w.T + b
            if i < len(ws) - 1:
                h = np.maximum(h, 0)
            hs.append(h)
        g = _np_softmax(h)
        loss = -np.log(g[rows, y]).mean()
        g[rows, y] -= 1
        g /= n
        for i in reversed(range(len(ws))):
            gw, gb = g.T @ hs[i], g.sum(0)
            if i:
                g = (g @ ws[i]) * (hs[i] > 0)
            ws[i] -= lr * gw
            bs[i] -= lr * gb
        return loss

    return {"main": step}, lambda loss: [float(loss)]


# ---------------------------------------------------------------- LeNet-5 step
LENET_BATCH, LENET_LR = 64, 0.01
_register("lenet", "LeNet-5 SGD step, batch 64 of 1x28x28")


def lenet_data(seed: int = 0):
    """Images, labels and the ten parameters (conv1, conv2, fc1-fc3 weights and biases)."""
    rng = _rng(seed)
    x = rng.standard_normal((LENET_BATCH, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, LENET_BATCH)
    shapes = [((6, 1, 5, 5), 25), ((6,), 25), ((16, 6, 5, 5), 150), ((16,), 150),
              ((120, 400), 400), ((120,), 400), ((84, 120), 120), ((84,), 120), ((10, 84), 84),
              ((10,), 84)]
    return x, y, [_uniform(rng, fan_in, s) for s, fan_in in shapes]


def _lenet_loss(F, x, y, ps):
    h = F.max_pool2d(F.relu(F.conv2d(x, ps[0], ps[1], padding=2)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, ps[2], ps[3])), 2)
    h = h.reshape(h.shape[0], -1)
    return _mlp_loss(F, h, y, ps[4:])


_sgd_builders("lenet", lenet_data, _lenet_loss, LENET_LR)


# ---------------------------------------------------------------- transformer LM step
VOCAB, D_MODEL, HEADS, LAYERS, SEQ, BATCH, TF_LR = 65, 128, 4, 2, 64, 16, 1e-3
_register("transformer", f"transformer LM step (d {D_MODEL}, {LAYERS} pre-norm blocks, "
          f"{HEADS} heads, seq {SEQ}, batch {BATCH}, Adam)")


def transformer_data(seed: int = 0):
    """Token batch, next-token targets and a state dict in PyTorch's names."""
    rng = _rng(seed)
    data = rng.integers(0, VOCAB, (BATCH, SEQ + 1))
    D, F4 = D_MODEL, 4 * D_MODEL
    sd = {"tok.weight": rng.standard_normal((VOCAB, D)).astype(np.float32),
          "pos.weight": rng.standard_normal((SEQ, D)).astype(np.float32)}
    for i in range(LAYERS):
        p = f"blocks.{i}."
        sd.update({
            p + "self_attn.in_proj_weight": _uniform(rng, D, (3 * D, D)),
            p + "self_attn.in_proj_bias": np.zeros(3 * D, np.float32),
            p + "self_attn.out_proj.weight": _uniform(rng, D, (D, D)),
            p + "self_attn.out_proj.bias": np.zeros(D, np.float32),
            p + "linear1.weight": _uniform(rng, D, (F4, D)),
            p + "linear1.bias": _uniform(rng, D, F4),
            p + "linear2.weight": _uniform(rng, F4, (D, F4)),
            p + "linear2.bias": _uniform(rng, F4, D),
        })
        for n in ("norm1", "norm2"):
            sd[p + n + ".weight"] = np.ones(D, np.float32)
            sd[p + n + ".bias"] = np.zeros(D, np.float32)
    sd.update({"norm.weight": np.ones(D, np.float32), "norm.bias": np.zeros(D, np.float32),
               "head.weight": _uniform(rng, D, (VOCAB, D)), "head.bias": _uniform(rng, D, VOCAB)})
    return data[:, :-1].copy(), data[:, 1:].reshape(-1).copy(), sd


@builder("transformer", "torchlike")
def _transformer_tl(ns):
    nn = ns.nn

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(VOCAB, D_MODEL)
            self.pos = nn.Embedding(SEQ, D_MODEL)
            self.blocks = nn.ModuleList([
                nn.TransformerEncoderLayer(D_MODEL, HEADS, 4 * D_MODEL, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
                for _ in range(LAYERS)])
            self.norm = nn.LayerNorm(D_MODEL)
            self.head = nn.Linear(D_MODEL, VOCAB)
            self.mask = nn.Transformer.generate_square_subsequent_mask(SEQ)

        def forward(self, idx):
            x = self.tok(idx) + self.pos.weight[:idx.shape[1]]
            for blk in self.blocks:
                x = blk(x, src_mask=self.mask, is_causal=True)
            return self.head(self.norm(x).reshape(-1, D_MODEL))

    x, y, sd = transformer_data()
    model = LM()
    model.load_state_dict({k: ns.tensor(v) for k, v in sd.items()})
    X, Y = ns.tensor(x), ns.tensor(y)
    params = list(model.parameters())
    opt = ns.optim.Adam(params, lr=TF_LR)
    fwd = ns.compile(model)
    return (_tl_train(ns, lambda: ns.F.cross_entropy(fwd(X), Y), opt),
            _tl_losses(ns))


def _adam(lr, b1=0.9, b2=0.999, eps=1e-8):
    """PyTorch's Adam (bias-corrected, no weight decay) on lists of JAX arrays; the state
    is (step, first moments, second moments)."""

    def update(ps, gs, state):
        import jax.numpy as jnp

        if not isinstance(state, tuple):
            state = (jnp.zeros((), jnp.float32), state, [s * 0 for s in state])
        t, m, v = state
        t = t + 1
        m = [b1 * a + (1 - b1) * g for a, g in zip(m, gs)]
        v = [b2 * a + (1 - b2) * g * g for a, g in zip(v, gs)]
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        ps = [p - lr * (a / c1) / (jnp.sqrt(b / c2) + eps) for p, a, b in zip(ps, m, v)]
        return ps, (t, m, v)

    return update


@builder("transformer", "jax")
def _transformer_jax(ns):
    import jax
    import jax.numpy as jnp

    x, y, sd = transformer_data()
    names = list(sd)
    X, Y = ns.tensor(x), ns.tensor(y)
    F, H, D = ns.F, HEADS, D_MODEL
    causal = jnp.tril(jnp.ones((SEQ, SEQ), bool))

    def attention(h, p):
        b, s, _ = h.shape
        qkv = F.linear(h, p["self_attn.in_proj_weight"], p["self_attn.in_proj_bias"])
        q, k, v = (a.reshape(b, s, H, D // H).transpose(0, 2, 1, 3)
                   for a in jnp.split(qkv, 3, axis=-1))
        att = q @ k.transpose(0, 1, 3, 2) / (D // H) ** 0.5
        att = jax.nn.softmax(jnp.where(causal, att, -jnp.inf), axis=-1)
        o = (att @ v).transpose(0, 2, 1, 3).reshape(b, s, D)
        return F.linear(o, p["self_attn.out_proj.weight"], p["self_attn.out_proj.bias"])

    def loss_fn(ps):
        p = dict(zip(names, ps))
        h = p["tok.weight"][X] + p["pos.weight"][:SEQ]
        for i in range(LAYERS):
            q = {k[len(f"blocks.{i}."):]: v for k, v in p.items() if k.startswith(f"blocks.{i}.")}
            h = h + attention(F.layer_norm(h, q["norm1.weight"], q["norm1.bias"]), q)
            f = F.layer_norm(h, q["norm2.weight"], q["norm2.bias"])
            f = F.linear(jax.nn.gelu(F.linear(f, q["linear1.weight"], q["linear1.bias"]),
                                     approximate=False), q["linear2.weight"], q["linear2.bias"])
            h = h + f
        h = F.layer_norm(h, p["norm.weight"], p["norm.bias"]).reshape(-1, D)
        return F.cross_entropy(F.linear(h, p["head.weight"], p["head.bias"]), Y)

    return _jax_train(ns, loss_fn, [sd[n] for n in names], _adam(TF_LR))


# ---------------------------------------------------------------- LSTM step
L_SEQ, L_BATCH, L_INPUT, L_HIDDEN, L_LR = 50, 32, 32, 128, 0.01
_register("lstm", f"LSTM step (input {L_INPUT}, hidden {L_HIDDEN}, seq {L_SEQ}, batch {L_BATCH}, "
          "MSE on the last hidden state, SGD)")


def lstm_data(seed: int = 0):
    """Weights in PyTorch's layout and init, inputs and targets."""
    rng = _rng(seed)
    H = L_HIDDEN
    shapes = {"weight_ih_l0": (4 * H, L_INPUT), "weight_hh_l0": (4 * H, H),
              "bias_ih_l0": (4 * H,), "bias_hh_l0": (4 * H,)}
    weights = {n: _uniform(rng, H, s) for n, s in shapes.items()}
    x = rng.standard_normal((L_SEQ, L_BATCH, L_INPUT)).astype(np.float32)
    y = rng.standard_normal((L_BATCH, H)).astype(np.float32)
    return weights, x, y


@builder("lstm", "torchlike")
def _lstm_tl(ns):
    weights, x, y = lstm_data()
    model = ns.nn.LSTM(L_INPUT, L_HIDDEN)
    model.load_state_dict({n: ns.tensor(a) for n, a in weights.items()})
    params = list(model.parameters())
    opt = ns.optim.SGD(params, lr=L_LR)
    X, Y = ns.tensor(x), ns.tensor(y)
    fwd = ns.compile(model)
    return (_tl_train(ns, lambda: ns.F.mse_loss(fwd(X)[1][0][-1], Y), opt),
            _tl_losses(ns))


@builder("lstm", "jax")
def _lstm_jax(ns):
    import jax
    import jax.numpy as jnp

    weights, x, y = lstm_data()
    X, Y = ns.tensor(x), ns.tensor(y)
    H = L_HIDDEN

    def loss_fn(ps):
        w_ih, w_hh, b_ih, b_hh = ps
        xg = X @ w_ih.T + (b_ih + b_hh)

        def cell(carry, g):
            h, c = carry
            g = g + h @ w_hh.T
            i, f = jax.nn.sigmoid(g[:, :H]), jax.nn.sigmoid(g[:, H:2 * H])
            c = f * c + i * jnp.tanh(g[:, 2 * H:3 * H])
            h = jax.nn.sigmoid(g[:, 3 * H:]) * jnp.tanh(c)
            return (h, c), None

        zero = jnp.zeros((L_BATCH, H), jnp.float32)
        (h, _), _ = jax.lax.scan(cell, (zero, zero), xg)
        return jnp.mean((h - Y) ** 2)

    return _jax_train(ns, loss_fn, list(weights.values()), _jax_sgd(L_LR))


@builder("lstm", "numpy")
def _lstm_np(ns):
    weights, x, y = lstm_data()
    w_ih, w_hh = weights["weight_ih_l0"], weights["weight_hh_l0"]
    b_ih, b_hh = weights["bias_ih_l0"], weights["bias_hh_l0"]
    L, B, H = L_SEQ, L_BATCH, L_HIDDEN
    f32 = np.float32
    scale = np.full(4 * H, 0.5, f32)
    scale[2 * H:3 * H] = 1  # sigmoid(x) = 0.5 tanh(x / 2) + 0.5 on i, f, o; tanh on g
    shift = 1 - scale
    on_g = 1 - 2 * shift  # 1 on g, 0 elsewhere

    def step():
        xg = (x.reshape(L * B, -1) @ w_ih.T + (b_ih + b_hh)).reshape(L, B, 4 * H)
        w_t = np.ascontiguousarray(w_hh.T)
        hs = np.zeros((L + 1, B, H), f32)
        cs = np.zeros((L + 1, B, H), f32)
        acts = np.empty((L, B, 4 * H), f32)
        for t in range(L):
            a = acts[t]
            np.matmul(hs[t], w_t, out=a)
            a += xg[t]
            a *= scale
            np.tanh(a, out=a)
            a *= scale
            a += shift
            np.multiply(a[:, H:2 * H], cs[t], out=cs[t + 1])
            cs[t + 1] += a[:, :H] * a[:, 2 * H:3 * H]
            np.tanh(cs[t + 1], out=hs[t + 1])
            hs[t + 1] *= a[:, 3 * H:]
        d = hs[L] - y
        loss = (d * d).mean()
        dh = d * f32(2 / d.size)
        dc = np.zeros_like(dh)
        dgates = np.empty_like(acts)
        for t in reversed(range(L)):
            a = acts[t]
            tc = np.tanh(cs[t + 1])
            dc += dh * a[:, 3 * H:] * (1 - tc * tc)
            da = dgates[t]
            np.multiply(dc, a[:, 2 * H:3 * H], out=da[:, :H])
            np.multiply(dc, cs[t], out=da[:, H:2 * H])
            np.multiply(dc, a[:, :H], out=da[:, 2 * H:3 * H])
            np.multiply(dh, tc, out=da[:, 3 * H:])
            da *= (a + on_g) * (1 - a)
            dc *= a[:, H:2 * H]
            dh = da @ w_hh
        dg = dgates.reshape(L * B, 4 * H)
        grad_b = dg.sum(0)
        w_ih[...] -= L_LR * (dg.T @ x.reshape(L * B, -1))
        w_hh[...] -= L_LR * (dg.T @ hs[:L].reshape(L * B, H))
        b_ih[...] -= L_LR * grad_b
        b_hh[...] -= L_LR * grad_b
        return loss

    return {"main": step}, lambda loss: [float(loss)]


# ---------------------------------------------------------------- Hessian-vector product
_register("hvp", "Hessian-vector product of the MLP loss (forward-over-reverse)", check_steps=1)


def hvp_data():
    """The MLP workload's data and parameters, and a seeded direction for each parameter."""
    x, y, ps = mlp_data()
    rng = _rng(1)
    return x, y, ps, [rng.standard_normal(p.shape).astype(np.float32) for p in ps]


def _hvp_check(to_np, vs):
    def check(hv):
        hv = [to_np(h) for h in hv]
        vhv = sum(float((h.astype(np.float64) * v).sum()) for h, v in zip(hv, vs))
        return [vhv, _l1(hv)]

    return check


@builder("hvp", "torchlike")
def _hvp_tl(ns):
    x, y, ps, vs = hvp_data()
    X, Y = ns.tensor(x), ns.tensor(y)
    params = [ns.tensor(p, requires_grad=True) for p in ps]
    primals = tuple(ns.tensor(p) for p in ps)
    tangents = tuple(ns.tensor(v) for v in vs)
    n = len(ps)

    def loss(*p):
        return _mlp_loss(ns.F, X, Y, p)

    hvp = ns.compile(lambda *a: ns.hvp(loss, a[:n], a[n:]))
    steps = {"main": ns.compile_step(lambda: hvp(*primals, *tangents))}
    if not ns.compiled:  # the products a ratio within one library is taken of
        def hvp_rev():
            gs = ns.grad(loss(*params), params, create_graph=True)
            return ns.grad(sum((g * v).sum() for g, v in zip(gs, tangents)), params)

        def forward():
            with ns.no_grad():
                return loss(*primals)

        steps.update({"grad": lambda: ns.grad(loss(*params), params),
                      "jvp": lambda: ns.jvp(loss, primals, tangents),
                      "forward": forward, "hvp-rev": hvp_rev})
    return steps, _hvp_check(ns.np, vs)


@builder("hvp", "jax")
def _hvp_jax(ns):
    import jax

    x, y, ps, vs = hvp_data()
    X, Y = ns.tensor(x), ns.tensor(y)
    primals, tangents = [ns.tensor(p) for p in ps], [ns.tensor(v) for v in vs]

    def loss(p):
        return _mlp_loss(ns.F, X, Y, p)

    hvp = jax.jit(lambda p, v: jax.jvp(jax.grad(loss), (p,), (v,))[1])
    grad, fwd = jax.jit(jax.grad(loss)), jax.jit(loss)
    jvp = jax.jit(lambda p, v: jax.jvp(loss, (p,), (v,)))
    steps = {"main": lambda: jax.block_until_ready(hvp(primals, tangents)),
             "grad": lambda: jax.block_until_ready(grad(primals)),
             "jvp": lambda: jax.block_until_ready(jvp(primals, tangents)),
             "forward": lambda: jax.block_until_ready(fwd(primals))}
    return steps, _hvp_check(np.asarray, vs)


@builder("hvp", "numpy")
def _hvp_np(ns):
    x, y, ps, vs = hvp_data()
    W, b, dW, db = ps[0::2], ps[1::2], vs[0::2], vs[1::2]
    n = x.shape[0]
    onehot = np.zeros((n, MLP_SIZES[-1]), np.float32)
    onehot[np.arange(n), y] = 1

    def hvp():
        hs, dhs, masks = [x], [None], []  # forward with tangents (R-op)
        h, dh = x, None
        for i in range(3):
            z = h @ W[i].T + b[i]
            dz = h @ dW[i].T + db[i]
            if dh is not None:
                dz += dh @ W[i].T
            if i < 2:
                m = z > 0
                h, dh = z * m, dz * m
                masks.append(m)
                hs.append(h)
                dhs.append(dh)
        p = _np_softmax(z)
        g = (p - onehot) / n
        dg = p * (dz - (p * dz).sum(1, keepdims=True)) / n
        out = [None] * 6
        for i in (2, 1, 0):  # backward with tangents
            a, da = hs[i], dhs[i]
            hw = dg.T @ a
            if da is not None:
                hw += g.T @ da
            out[2 * i], out[2 * i + 1] = hw, dg.sum(0)
            if i:
                gh = g @ W[i]
                dgh = dg @ W[i] + g @ dW[i]
                g, dg = gh * masks[i - 1], dgh * masks[i - 1]
        return out

    return {"main": hvp}, _hvp_check(np.asarray, vs)
