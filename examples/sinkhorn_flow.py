"""A point cloud flows to two moons by gradient descent on the Sinkhorn divergence.

    python examples/sinkhorn_flow.py [--steps 40] [--out docs/sinkhorn-flow.png] [--quick]

The source (300 points of a Gaussian blob) moves by plain gradient descent on

    S(x, y) = OT_eps(x, y) - (OT_eps(x, x) + OT_eps(y, y)) / 2,

where ``OT_eps`` is the entropic objective ``<M, P> + eps KL(P | a b^T)``
of the squared Euclidean cost, computed by ``fastsinkhorn.solve`` on torch
tensors: ``loss.backward()`` gives its exact gradient with respect to the
points (implicit differentiation at the optimum). The step is the
Wasserstein gradient step ``x_i <- x_i - tau * grad_i / a_i`` (the gradient
of one point is proportional to its mass ``a_i = 1/n``; ``tau = 1/2`` would
jump to the entropic transport map's image in one step). It prints the
divergence every few steps and the total time, and draws snapshots of the
cloud over the target into ``--out``.
"""

import argparse
import math
import time

import numpy as np
import torch

import fastsinkhorn as fs


def ot_eps(x, y, eps):
    """Entropic OT objective between uniform clouds ``x`` and ``y`` (torch, differentiable)."""
    return fs.solve(fs.dist(x, y), reg=eps).value


def sinkhorn_divergence(x, y, eps):
    """``OT_eps(x, y) - (OT_eps(x, x) + OT_eps(y, y)) / 2``: zero when the clouds coincide.

    The one function to change when ``solve_sample(..., debias=True)`` (no
    n x m cost) is available.
    """
    return ot_eps(x, y, eps) - (ot_eps(x, x, eps) + ot_eps(y, y, eps)) / 2


def two_moons(n, rng, noise=0.05):
    """``n`` points on two interleaved half circles, in about [0, 1]^2."""
    t = math.pi * rng.random(n)
    upper = rng.random(n) < 0.5
    x = np.where(upper, np.cos(t), 1 - np.cos(t))
    y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
    pts = np.stack([x, y], 1) + noise * rng.standard_normal((n, 2))
    return (pts + [1.0, 0.5]) / 3.0


def flow(n=300, steps=40, eps=1e-3, tau=0.1, seed=0, snapshots=(0, 5, 20), log_every=5):
    """Run the flow; the divergence per step and the clouds at ``snapshots`` (and at the end)."""
    torch.set_default_dtype(torch.float64)
    rng = np.random.default_rng(seed)
    y = torch.from_numpy(two_moons(n, rng))
    x = torch.from_numpy(0.08 * rng.standard_normal((n, 2)) + [0.25, 0.75]).requires_grad_()
    history, clouds = [], {}
    for step in range(steps + 1):
        if step in snapshots or step == steps:
            clouds[step] = x.detach().numpy().copy()
        loss = sinkhorn_divergence(x, y, eps)
        history.append(float(loss.detach()))
        if step % log_every == 0 or step == steps:
            print(f"step {step:4d}  S(x, y) = {history[-1]:.3e}", flush=True)
        if step == steps:
            break
        loss.backward()
        with torch.no_grad():
            x -= tau * n * x.grad  # the gradient of a point scales with its mass 1 / n
        x.grad = None
    return history, clouds, y.numpy()


def draw(clouds, target, history, out):
    """Snapshots of the cloud over the target, and the divergence against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(clouds) + 1, figsize=(3.2 * (len(clouds) + 1), 3.3))
    for ax, (step, x) in zip(axes, clouds.items()):
        ax.scatter(target[:, 0], target[:, 1], s=4, c="tab:orange", alpha=0.5, label="target")
        ax.scatter(x[:, 0], x[:, 1], s=4, c="tab:blue", label="cloud")
        ax.set_title(f"step {step}")
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(-0.05, 1.05)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].legend(loc="lower right", fontsize=7)
    ax = axes[-1]
    ax.semilogy(np.maximum(history, 1e-12))
    ax.set_xlabel("step")
    ax.set_title("Sinkhorn divergence")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--out", default="docs/sinkhorn-flow.png")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 100 points, 8 steps")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.quick:
        history, clouds, target = flow(n=100, steps=min(args.steps, 8), snapshots=(0, 4), log_every=2)
    else:
        history, clouds, target = flow(steps=args.steps, snapshots=(0, 4, 12))
    draw(clouds, target, history, args.out)
    print(f"S from {history[0]:.3e} to {history[-1]:.3e} in {len(history) - 1} steps, "
          f"{time.perf_counter() - start:.1f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
