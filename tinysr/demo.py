"""A one-minute demo of the engine: learn x2 super-resolution of a photo with a tiny sub-pixel network.

It needs nothing but the package (the photo ships inside scikit-image), trains on the CPU for a few
hundred steps and prints the loss as it falls, next to the loss of plain pixel replication so the
number means something.
"""
import time

import numpy as np

from . import functional as F, nn, optim
from .autograd import Tensor, no_grad


class TinyESPCN(nn.Module):
    """conv 5x5 -> PReLU -> conv 3x3 -> pixel shuffle (Shi et al., ESPCN, CVPR 2016, much reduced),
    added to a pixel-replicated copy of the input so that the network only learns the missing detail
    (the residual learning of VDSR).

    Input: LR luminance (N, 1, h, w) in [0, 1]; output: (N, 1, 2h, 2w).
    """

    def __init__(self, r=2, features=16):
        super().__init__()
        self.feature_extraction = nn.Conv2d(1, features, 5, padding=2)
        self.act = nn.PReLU(features)
        self.sub_pixel = nn.Conv2d(features, r * r, 3, padding=1)
        self.shuffle = nn.PixelShuffle(r)
        self.r = r
        nn.init.normal_(self.sub_pixel.weight, std=1e-3)

    def forward(self, x):
        replicated = self.shuffle(F.concat([x] * (self.r * self.r), axis=1))
        return replicated + self.shuffle(self.sub_pixel(self.act(self.feature_extraction(x))))


def _photo_luminance():
    from skimage import data
    rgb = data.astronaut().astype(np.float32) / 255
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def run(steps=400, batch=16, patch=24, seed=0, log_every=50, out=print):
    """Train :class:`TinyESPCN` on random crops of a builtin photo; returns the list of losses."""
    from . import options
    steps = options.check("steps", steps)
    rng = np.random.default_rng(seed)
    nn.init.seed(seed)
    y = _photo_luminance()
    h, w = y.shape

    def sample():
        tops, lefts = rng.integers(0, h - 2 * patch, batch), rng.integers(0, w - 2 * patch, batch)
        hr = np.stack([y[t:t + 2 * patch, l:l + 2 * patch] for t, l in zip(tops, lefts)])[:, None]
        lr = hr.reshape(batch, 1, patch, 2, patch, 2).mean(axis=(3, 5))  # 2x2 box down-sampling
        return lr.astype(np.float32), hr.astype(np.float32)

    net = TinyESPCN()
    opt = optim.Adam(net.parameters(), lr=3e-3)
    lr_val, hr_val = sample()
    nearest = float(((np.repeat(np.repeat(lr_val, 2, 2), 2, 3) - hr_val) ** 2).mean())
    out(f"tinysr demo: x2 super-resolution of 'astronaut' with a {net.num_parameters()}-parameter network")
    out(f"  loss of pixel replication on a held-out batch: {nearest:.5f}")
    losses, t0 = [], time.time()
    for step in range(1, steps + 1):
        lr, hr = sample()
        loss = F.mse_loss(net(Tensor(lr)), Tensor(hr))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % log_every == 0 or step == 1:
            out(f"  step {step:4d}  training loss {np.mean(losses[-log_every:]):.5f}")
    with no_grad():
        val = F.mse_loss(net(Tensor(lr_val)), Tensor(hr_val)).item()
    out(f"  held-out loss after {steps} steps: {val:.5f} ({nearest / val:.1f}x lower than pixel replication, "
        f"{time.time() - t0:.1f} s)")
    return losses


if __name__ == "__main__":
    run()
