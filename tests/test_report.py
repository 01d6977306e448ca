"""tinysr.report: the activation memory a graph keeps for backward, and the papers' table lookups."""
import json

import numpy as np

from tinysr import Tensor, nn
from tinysr import functional as F
from tinysr.report import PaperTable, graph_memory, paper_table


def _fmap_bytes(x):
    return x.data.nbytes


def test_a_conv_relu_conv_block_keeps_two_feature_maps_and_a_bn_block_four():
    nn.init.seed(0)
    x = Tensor(np.random.default_rng(0).random((1, 8, 12, 12), dtype=np.float32), requires_grad=True)
    conv1, conv2 = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
    plain = nn.Sequential(conv1, conv2)
    mem = graph_memory(conv2(F.relu(conv1(x))), plain)
    # conv1 keeps x, conv2 keeps ReLU's output, which ReLU also keeps: counted once
    assert sum(mem.values()) == 2 * _fmap_bytes(x)
    bn1, bn2 = nn.BatchNorm2d(8), nn.BatchNorm2d(8)
    with_bn = nn.Sequential(conv1, bn1, conv2, bn2)
    mem_bn = graph_memory(bn2(conv2(F.relu(bn1(conv1(x))))), with_bn)
    assert sum(mem_bn.values()) >= 4 * _fmap_bytes(x) and mem_bn.get("BatchNorm", 0) >= 2 * _fmap_bytes(x)


def test_parameters_are_left_out_and_a_constant_factor_keeps_only_itself():
    conv = nn.Conv2d(4, 4, 3, padding=1)
    x = Tensor(np.ones((1, 4, 16, 16), np.float32), requires_grad=True)
    r = conv(x)
    with_weights = graph_memory(r)
    without = graph_memory(r, conv)
    assert with_weights["Conv2d"] - without["Conv2d"] == conv.weight.data.nbytes   # the weight gradient needs x; bias none
    scaled = graph_memory(r * 0.1, conv)
    assert scaled.get("Mul", 0) < 64 and scaled["Conv2d"] == without["Conv2d"]


def test_a_view_counts_as_the_array_it_shares():
    x = Tensor(np.ones((2, 64), np.float32), requires_grad=True)
    y = (x.reshape(2, 8, 8) * x.reshape(2, 8, 8))       # Mul keeps two views of x's memory
    assert sum(graph_memory(y).values()) == x.data.nbytes


def test_paper_table_looks_cells_up_and_marks_recalled_ones(tmp_path):
    assert not paper_table(None) and not paper_table(tmp_path)
    ref = tmp_path / "reference"
    ref.mkdir()
    (ref / "paper_psnr.json").write_text(json.dumps(
        {"VDSR": {"Set5": {"x3": [33.66, 0.92], "x4": [None, None]}}, "DRCN": {"Set5": {"x3": [33.82, 0.92]}}}))
    (ref / "paper_psnr_meta.json").write_text(json.dumps({"methods": {"DRCN": {"recalled_cells": ["Set5.*"]}}}))
    t = paper_table(tmp_path)
    assert t and isinstance(t, PaperTable) and t.source == ref / "paper_psnr.json"
    assert t.value("VDSR", "Set5", 3) == 33.66 and t.value("VDSR", "Set5", 4) is None
    assert t.value("VDSR", "Set14", 3) is None and t.value("SRCNN", "Set5", 3) is None
    assert t.cell("VDSR", "Set5", 3) == "33.66" and t.cell("DRCN", "Set5", 3) == "33.82*"
    assert t.cell("VDSR", "Set5", 2) == "-" and not t.recalled("VDSR", "Set5", 3)


def test_format_psnr_table_puts_ours_beside_the_paper(tmp_path):
    from tinysr.report import format_psnr_table
    paper = PaperTable({"VDSR": {"Set5": {"x2": [37.53, 0.95], "x3": [33.66, 0.92]}}},
                       {"VDSR": {"recalled_cells": ["Set5.x2"]}})
    rows = {"Bicubic here": ({3: 30.391}, None), "VDSR": ({2: 37.0, 3: 33.5}, "VDSR"), "nothing": ({}, None)}
    lines = format_psnr_table(rows, paper, "Set5", (2, 3), width=14).split("\n")
    assert lines[0] == "method" + " " * 8 + "   ours x2   ours x3  paper x2  paper x3"
    assert lines[1] == "Bicubic here" + "  " + "         -     30.39"
    assert lines[2] == "VDSR" + " " * 10 + "     37.00     33.50    37.53*     33.66"
    assert lines[3] == "nothing" + " " * 7 + "         -         -"
    assert lines[4].startswith("* recalled")
    alone = format_psnr_table(rows, PaperTable(), "Set5", (2, 3), our_scales=(3,), width=14).split("\n")
    assert alone == ["method" + " " * 8 + "   ours x3", "Bicubic here" + "       30.39", "VDSR" + " " * 10 + "     33.50"]
    assert paper.psnr_ssim("VDSR", "Set5", 3) == (33.66, 0.92) and paper.psnr_ssim("VDSR", "Set5", 4) is None


def test_weight_layers_to_output_counts_the_shortest_path_and_skips_shorten_it():
    from tinysr.report import weight_layers_to_output

    class Stack(nn.Module):
        def __init__(self, skip):
            super().__init__()
            self.skip = skip
            self.c1, self.c2, self.c3 = (nn.Conv2d(1, 1, 3, padding=1) for _ in range(3))

        def forward(self, x):
            h = F.relu(self.c1(x))
            y = self.c3(F.relu(self.c2(h)))
            return y + h if self.skip else y

    x = np.random.default_rng(0).random((1, 1, 6, 6)).astype(np.float32)
    plain, skipped = Stack(False), Stack(True)
    assert weight_layers_to_output(plain, x) == {"c1": 3, "c2": 2, "c3": 1}
    assert weight_layers_to_output(skipped, x) == {"c1": 1, "c2": 2, "c3": 1}
    assert "forward" not in vars(plain.c1)                      # the recording wrappers are gone
