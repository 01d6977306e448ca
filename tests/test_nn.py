"""Module API: registration, shared parameters, state_dict round trips, modes, repr, initialisers."""
import numpy as np
import pytest

import tinysr
from tinysr import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.PReLU(4)
        self.bn = nn.BatchNorm2d(4)
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.shared = self.body[0]  # the same module twice: its parameters count once

    def forward(self, x):
        return self.shared(self.body(self.bn(self.act(self.head(x)))))


def test_parameters_are_found_and_shared_once():
    m = Tiny()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["head.weight", "head.bias", "act.weight", "bn.weight", "bn.bias", "body.0.weight", "body.0.bias"]
    assert m.num_parameters() == (36 + 4) + 4 + 8 + (144 + 4)
    assert [n for n, _ in m.named_buffers()] == ["bn.running_mean", "bn.running_var"]


def test_state_dict_round_trip_and_errors():
    a, b = Tiny(), Tiny()
    x = tinysr.tensor(np.random.default_rng(0).standard_normal((2, 1, 6, 6)))
    a.train()
    a(x)  # updates BatchNorm running stats
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    sd = a.state_dict()
    sd["head.weight"] = np.zeros((4, 1, 5, 5))
    with pytest.raises(ValueError, match="wrong shape: head.weight"):
        b.load_state_dict(sd)
    sd = a.state_dict()
    del sd["bn.running_var"]
    sd["extra"] = np.zeros(1)
    with pytest.raises(ValueError, match="missing: bn.running_var.*unexpected: extra"):
        b.load_state_dict(sd)


def test_train_eval_switches_every_submodule():
    m = Tiny().eval()
    assert all(not s.training for s in m.modules())
    m.train()
    assert all(s.training for s in m.modules())


def test_repr_shows_parameter_counts():
    r = repr(Tiny())
    assert "Conv2d(1, 4, kernel_size=(3, 3), padding=(1, 1))  # 40 params" in r
    assert r.rstrip().endswith("# 200 params")


def test_to_unknown_device_is_a_clear_error():
    with pytest.raises(tinysr.backend.DeviceError, match="unknown device"):
        Tiny().to("tpu")


def test_replicate_padding_mode_matches_explicit_pad():
    conv = nn.Conv2d(1, 2, 3, padding=1, padding_mode="replicate")
    x = tinysr.tensor(np.random.default_rng(0).standard_normal((1, 1, 5, 5)))
    ref = tinysr.functional.conv2d(tinysr.functional.pad(x, 1, "replicate"), conv.weight, conv.bias)
    np.testing.assert_allclose(conv(x).numpy(), ref.numpy())


@pytest.mark.parametrize("init,expected_std", [
    (lambda p: nn.init.normal_(p, std=0.001), 0.001),
    (lambda p: nn.init.kaiming_normal_(p), np.sqrt(2 / (64 * 9))),
    (lambda p: nn.init.xavier_normal_(p), np.sqrt(2 / (64 * 9 + 64 * 9))),
    (lambda p: nn.init.xavier_uniform_(p), np.sqrt(2 / (64 * 9 + 64 * 9))),
    (lambda p: nn.init.kaiming_uniform_(p), np.sqrt(2 / (64 * 9))),
])
def test_initialisers_have_the_papers_statistics(init, expected_std):
    w = nn.Parameter(np.zeros((64, 64, 3, 3), np.float32))
    init(w)
    assert w.dtype == np.float32
    assert abs(w.data.std() / expected_std - 1) < 0.02
    assert abs(w.data.mean()) < 0.05 * expected_std + 1e-6


def test_seed_fixes_initialisation():
    nn.init.seed(123)
    a = nn.Conv2d(3, 8, 3).weight.numpy()
    nn.init.seed(123)
    b = nn.Conv2d(3, 8, 3).weight.numpy()
    nn.init.seed(124)
    c = nn.Conv2d(3, 8, 3).weight.numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
