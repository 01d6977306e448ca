"""The registry filled by each model file's ``@register`` and the closed set of recipe options.

A recipe option tinysr does not implement must stop training with a sentence, not be dropped.
"""
import importlib
from dataclasses import replace

import numpy as np
import pytest

from tinysr import api, models, optim, recipes

registry = importlib.import_module("tinysr.models.registry")   # the module (models.registry is its function)


def test_every_model_file_registers_its_networks_in_the_papers_order():
    assert models.list_models() == ["srcnn", "fsrcnn", "vdsr", "drcn", "red30", "drrn", "srdensenet", "srresnet",
                                    "srgan_discriminator", "edsr_baseline", "edsr", "mdsr"]
    from tinysr.models.edsr import EDSR, MDSR
    from tinysr.models.srcnn import SRCNN
    assert registry.get_spec("srcnn").builder is SRCNN
    assert registry.get_spec("edsr").builder is EDSR and registry.get_spec("edsr_baseline").builder is EDSR
    assert registry.get_spec("mdsr").builder is MDSR
    d = models.build("srgan_discriminator", scale=4)
    assert type(d).__name__ == "SRGANDiscriminator" and d.scale == 4


def test_register_decorator_adds_a_network_and_refuses_a_taken_name():
    recipe = models.TrainingRecipe(data="T91", patch_size=8, batch_size=2, optimizer="adam", lr=1e-3, loss="mse")
    try:
        @registry.register("tiny_test_net", (2,), "lr-y", "nobody", "one conv", recipe, defaults={"width": 3})
        class Tiny(models.SRModel):
            def __init__(self, scale=2, width=1):
                super().__init__()
                self.scale, self.width = scale, width

        net = models.build("tiny_test_net")
        assert isinstance(net, Tiny) and net.width == 3 and net.scale == 2
        assert net.registry_name == "tiny_test_net"
        assert "tiny_test_net" in models.list_models()
        with pytest.raises(ValueError, match="already registered"):
            registry.register("srcnn", (2,), "lr-y", "nobody", "clash", recipe)(Tiny)
    finally:
        registry._REGISTRY.pop("tiny_test_net", None)


def _opt():
    net = models.build("srcnn", scale=3, n1=4, n2=2)
    return optim.SGD(net.parameters(), lr=0.1)


@pytest.mark.parametrize("schedule", [{"type": "fine-tune", "factor": 0.5}, {"type": "step", "gamma": 0.1},
                                      {"type": "exponential"}])
def test_an_unimplemented_schedule_raises_instead_of_a_constant_rate(schedule):
    recipe = replace(models.get_spec("vdsr").recipe, lr_schedule=schedule)
    with pytest.raises(ValueError, match="not implemented"):
        recipes.make_schedule(_opt(), recipe, 100, 10, log=lambda m: None)


def test_the_implemented_schedules_still_build():
    for s in ({"type": "cosine"}, {"type": "step", "milestones": [5]}, {"type": "step", "every_epochs": 2}):
        recipe = replace(models.get_spec("vdsr").recipe, lr_schedule=s)
        assert recipes.make_schedule(_opt(), recipe, 100, 10, log=lambda m: None) is not None


def test_an_unimplemented_augmentation_raises():
    net = models.build("vdsr", scale=2, depth=3, channels=4)
    images = [np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)]
    recipe = models.get_spec("drrn").recipe                   # DRRN's paper recipe asks for "downscale"
    assert "downscale" in recipe.augment
    with pytest.raises(ValueError, match="'downscale' is not implemented"):
        api.training_sampler(net, images, 2, recipe=recipe, recipe_name="paper", patch_size=16, batch_size=2)


def test_a_custom_label_size_that_the_network_does_not_make_raises():
    net = models.build("srcnn", scale=3, n1=4, n2=2)          # valid 9-1-5: 33 px in, 21 px out
    images = [np.random.default_rng(0).integers(0, 256, (60, 60, 3), dtype=np.uint8)]
    ok = replace(api.FAST_RECIPES["srcnn"], label_size=21)
    api.training_sampler(net, images, 3, recipe=ok, recipe_name="custom", patch_size=33, batch_size=2)
    bad = replace(ok, label_size=33)
    with pytest.raises(ValueError, match="label_size 33"):
        api.training_sampler(net, images, 3, recipe=bad, recipe_name="custom", patch_size=33, batch_size=2)


def test_loss_border_with_drcn_recursive_supervision_raises():
    net = models.build("drcn", scale=2, recursions=2, channels=4)
    recipe = replace(models.get_spec("drcn").recipe, loss_border=4)
    with pytest.raises(ValueError, match="loss_border"):
        recipes.loss_fn(recipe, net, 2, 10)
    assert isinstance(recipes.loss_fn(replace(recipe, loss_border=0), net, 2, 10), recipes.RecursiveSupervision)
