"""The ``tinysr`` command line: a thin wrapper over the Python API (:mod:`tinysr.api`).

    tinysr upscale photo.png --model fsrcnn --scale 3 --out photo_x3.png
    tinysr eval srcnn-x3 --dataset Set5 Set14 --scale 3
    tinysr train srcnn --scale 3 --iterations 20000
    tinysr srgan runs/srresnet-x4/step_0020000.npz --iterations 2000
    tinysr models

Errors reach the user as one sentence, not a traceback (set ``TINYSR_DEBUG=1`` for the traceback);
exit code 1 for a failed command, 2 for a wrong command line (argparse's convention).  Warnings (an
RGBA file that loses its alpha, a dataset with a missing image) are printed as one line each.
"""
import argparse
import os
import sys
import warnings

from .options import argtype

EPILOG_MAIN = """\
examples:
  tinysr upscale builtin:chelsea --model fsrcnn --scale 3 --out cat_x3.png
  tinysr upscale builtin:chelsea --scale 3 --compare cat_compare.png   # bicubic | model | original
  tinysr eval bicubic --dataset Set5 Set14 B100 --scale 2 3 4 --summary
  tinysr eval srcnn-x3 --dataset Set5                                 # shipped weights
  tinysr eval runs/srcnn-x3-fast-seed0/step_0020000.npz                # your own checkpoint
  tinysr train srcnn --scale 3 --iterations 20000                      # resumes if interrupted
  tinysr models

Datasets are found in $TINYSR_DATA/<name>, then ~/.cache/tinysr/<name>, else downloaded (sha256-checked).
Every PSNR/SSIM is printed with the protocol it was measured under (Y channel, scale px shaved, ...)."""


def _cmd_demo(args):
    from . import demo
    demo.run(steps=args.steps)


def _cmd_models(args):
    from . import models
    print(models.format_models_table())
    from .api import shipped_weights
    shipped = shipped_weights()
    if shipped:
        print("\nshipped weights (tinysr.load(name)): " + ", ".join(sorted(shipped)))
    else:
        print("\nno trained weights are shipped in this copy yet (tinysr train <model> makes them)")


def _paper_for(method, dataset, scale):
    from . import metrics
    if method == "bicubic":
        return metrics.BICUBIC_PAPER.get(dataset, {}).get(scale)
    return None


def _cmd_eval(args):
    from . import api, metrics
    for dataset in args.dataset:
        for scale in args.scale or [None]:
            if args.model == "bicubic":
                report = api.evaluate("bicubic", dataset, scale=scale or 3)
            else:
                report = api.evaluate(args.model, dataset, scale=scale, self_ensemble=args.self_ensemble,
                                      tile=None if args.tile in ("off", "auto") else args.tile,
                                      device=args.device, progress=sys.stderr.isatty())
            paper = _paper_for(args.model, report["dataset"], report["scale"])
            print(metrics.format_report(report, per_image=not args.summary, paper=paper))
            print()


def _cmd_upscale(args):
    from . import api
    from .data.io import imwrite
    if args.compare:
        res = api.compare(args.image, model=args.model, scale=args.scale, out=args.compare, tile=args.tile,
                          self_ensemble=args.self_ensemble, device=args.device)
        print(f"{args.image} treated as the original, shrunk x{args.scale} and upscaled back:")
        for k in ("bicubic", "model"):
            name = os.path.basename(args.model) if k == "model" else "bicubic"
            print(f"  {name:<12} PSNR {res[k]['psnr']:.3f} dB  SSIM {res[k]['ssim']:.4f}")
        from .metrics import protocol
        print(f"  ({protocol(args.scale)}; LR = uint8 bicubic RGB)")
        print(f"side-by-side picture: {res['out']}")
        if args.out:
            imwrite(args.out, res["images"][1])
            print(f"upscaled image: {args.out}")
        return
    out = args.out
    if out is None:
        stem = os.path.splitext(os.path.basename(args.image.split(":", 1)[-1]))[0]
        out = f"{stem}_x{args.scale}.png"
    sr = api.upscale(args.image, model=args.model, scale=args.scale, tile=args.tile,
                     self_ensemble=args.self_ensemble, out=out, device=args.device,
                     max_memory_gb=args.max_memory, log=print)
    print(f"wrote {out} ({sr.shape[1]}x{sr.shape[0]})")


def _cmd_train(args):
    import numpy as np
    from . import api
    data = args.data if len(args.data) > 1 else args.data[0]
    eval_data = None if args.eval_data.lower() == "none" else args.eval_data
    kw = {"variant": args.variant} if args.variant else None
    # Overflow warnings from a diverging step would bury the guard's own sentence (it stops the run
    # the moment the loss is not finite, and says what to do).
    with np.errstate(over="ignore", invalid="ignore"):
        res = api.train(args.model, scale=args.scale[0] if len(args.scale) == 1 else tuple(args.scale),
                        device=args.device, data=data, eval_data=eval_data,
                        recipe=args.recipe, iterations=args.iterations, epochs=args.epochs,
                        batch_size=args.batch_size, patch_size=args.patch_size, lr=args.lr, clip=args.clip,
                        seed=args.seed, out_dir=args.out, resume=not args.fresh, eval_every=args.eval_every,
                        checkpoint_every=args.checkpoint_every, model_kwargs=kw, init_from=args.init_from,
                        progress=not args.no_progress)
    from .distributed import launched_rank
    if launched_rank() == 0:     # under mpiexec, rank 0 speaks for the run
        print(f"done in {res.seconds / 60:.1f} min{_final_psnr(res)}; history and curves in {res.out_dir}")


def _final_psnr(res):
    """``": Set5 PSNR 30.12 dB after 200 steps (bicubic 33.66 dB on the same set; the shipped weights
    fsrcnn-x3 took 100,000 steps)"`` -- so that an early number is read against what it should beat."""
    m = res.metrics
    if not m or m.get("psnr") is None:
        return ""
    steps = len(res.history.get("loss", []))
    text = f": {m.get('dataset', 'test set')} PSNR {m['psnr']:.2f} dB after {steps:,} steps"
    extra = []
    if m.get("bicubic_psnr") is not None:
        extra.append(f"bicubic {m['bicubic_psnr']:.2f} dB on the same set")
    if m.get("shipped_steps"):
        name, n = m["shipped_steps"]
        extra.append(f"the shipped weights {name} took {n:,} steps")
    return text + (f" ({'; '.join(extra)})" if extra else "")


def _cmd_srgan(args):
    import numpy as np
    from . import api
    from .gan import train_srgan
    gen = api.load(args.generator, for_inference=False)
    if getattr(gen, "input_convention", None) != "lr-rgb":
        raise ValueError(f"{args.generator} is not an RGB network (SRResNet, EDSR): SRGAN trains one of those, "
                         "normally an SRResNet trained with `tinysr train srresnet --scale 4`")
    scale = int(gen.scale)
    out = args.out or f"runs/srgan-x{scale}-seed{args.seed}"
    data = args.data if len(args.data) > 1 else args.data[0]
    evaluate = None
    if args.eval_data.lower() != "none":
        def evaluate(g):
            return {"psnr": api.evaluate(g, args.eval_data, scale)["psnr"]}
    disc = {"base": args.disc_base, "dense": args.disc_dense}
    with np.errstate(over="ignore", invalid="ignore"):
        res = train_srgan(gen, data=data, iterations=args.iterations, batch_size=args.batch_size,
                          patch_size=args.patch_size, lr=args.lr, adv_weight=args.adv_weight, vgg=args.vgg,
                          vgg_layer=args.vgg_layer, discriminator_kwargs=disc, evaluate=evaluate,
                          eval_every=args.eval_every, seed=args.seed, device=args.device, out_dir=out,
                          checkpoint_every=args.checkpoint_every, progress=not args.no_progress)
    last = res.history["eval"][-1]["psnr"] if res.history["eval"] else None
    psnr = f"; {args.eval_data} PSNR {last:.2f} dB" if last is not None else ""
    print(f"done in {res.seconds / 60:.1f} min{psnr}; the generator is {out}/generator.npz "
          f"(tinysr upscale photo.png --model {out}/generator.npz --scale {scale})")


def build_parser():
    """The ``tinysr`` argument parser: one subcommand per ``_add_*_parser`` below, every numeric option
    checked by its rule in :mod:`tinysr.options`."""
    p = argparse.ArgumentParser(
        prog="tinysr", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG_MAIN,
        description="Classic super-resolution networks (SRCNN to EDSR), rebuilt in NumPy: train them, measure "
                    "them under the papers' protocol, and upscale your photos.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_demo_parser, _add_models_parser, _add_eval_parser, _add_upscale_parser, _add_train_parser,
                _add_srgan_parser):
        add(sub)
    return p


def _add_demo_parser(sub):
    """``tinysr demo``: a tiny network trained for a minute."""
    d = sub.add_parser("demo", help="train a tiny network for a minute and watch its loss fall")
    d.add_argument("--steps", type=argtype("steps"), default=400, help="training steps (default 400)")
    d.set_defaults(func=_cmd_demo)


def _add_models_parser(sub):
    """``tinysr models``: the table of networks."""
    m = sub.add_parser("models", help="list the networks with parameters, receptive field and input convention")
    m.set_defaults(func=_cmd_models)


def _add_eval_parser(sub):
    """``tinysr eval``: PSNR/SSIM under the papers' protocol."""
    e = sub.add_parser(
        "eval", help="PSNR/SSIM of a model (or bicubic) on test sets under the papers' protocol",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Measure a model the way the SR papers do: HR modcropped to a multiple of the scale, LR by "
                    "MATLAB bicubic, output rounded to 8 bits, PSNR/SSIM on the Y channel with `scale` pixels "
                    "shaved from each border.  'bicubic' prints the baseline next to the published row.",
        epilog="examples:\n  tinysr eval bicubic --dataset Set5 Set14 --scale 2 3 4 --summary\n"
               "  tinysr eval srcnn-x3 --self-ensemble\n  tinysr eval runs/fsrcnn-x3-fast-seed0/step_0030000.npz "
               "--dataset Set5 Set14 B100")
    e.add_argument("model", help="'bicubic', a shipped name such as srcnn-x3 (see `tinysr models`), or a "
                                 "checkpoint file written by `tinysr train`")
    e.add_argument("--dataset", nargs="+", default=["Set5"], help="test sets (Set5, Set14, B100, builtin) or "
                                                                   "folders of images (default Set5)")
    e.add_argument("--scale", nargs="+", type=argtype("scale"), default=None,
                   help="scales (default: the model's own; 3 for bicubic)")
    e.add_argument("--self-ensemble", action="store_true", help="average the 8 flips/rotations (8x slower)")
    e.add_argument("--tile", default=None, type=argtype("tile"),
                   help="run in tiles of this many input pixels (same result), or 'off' (default)")
    e.add_argument("--summary", action="store_true", help="only the mean line, not every image")
    e.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    e.set_defaults(func=_cmd_eval)


def _add_upscale_parser(sub):
    """``tinysr upscale``: super-resolve one image."""
    u = sub.add_parser(
        "upscale", help="super-resolve an image with a trained network",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Upscale a photo.  Y networks (SRCNN, FSRCNN, VDSR, ...) super-resolve the luminance and "
                    "upsample the colour (Cb, Cr) with bicubic, as the papers' demos do; RGB networks (EDSR, "
                    "SRResNet) take the RGB image.  Big images run in overlapping tiles whose result equals the "
                    "untiled one, so memory stays bounded.",
        epilog="examples:\n  tinysr upscale photo.jpg --scale 3 --out photo_x3.png\n"
               "  tinysr upscale builtin:chelsea --model srcnn --scale 3 --compare side_by_side.png\n"
               "  tinysr upscale big.png --model runs/fsrcnn-x2-fast-seed0/step_0030000.npz --scale 2 --tile 256")
    u.add_argument("image", help="an image file (PNG, JPEG, ...) or builtin:<photo> (astronaut, chelsea, coffee, "
                                 "rocket, ...)")
    u.add_argument("--model", default="fsrcnn", help="shipped or registry name (fsrcnn means the shipped "
                                                     "fsrcnn-x<scale>), or a checkpoint file (default fsrcnn)")
    u.add_argument("--scale", type=argtype("scale"), default=3, help="upscaling factor (default 3)")
    u.add_argument("--out", default=None, help="output PNG (default <image>_x<scale>.png)")
    u.add_argument("--tile", default="auto", type=argtype("tile"),
                   help="tile size in input pixels, 'auto' (default) or 'off'")
    u.add_argument("--max-memory", type=argtype("max_memory_gb"), default=4.0, metavar="GB",
                   help="refuse an upscale whose estimated memory exceeds this many GB (default 4); the estimate "
                        "is printed before the work starts")
    u.add_argument("--self-ensemble", action="store_true", help="average the 8 flips/rotations (8x slower)")
    u.add_argument("--compare", metavar="PNG", default=None,
                   help="treat the image as the original: shrink it by --scale, upscale it back with bicubic and "
                        "with the model, print both PSNRs and write a side-by-side picture to PNG")
    u.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    u.set_defaults(func=_cmd_upscale)


def _add_train_parser(sub):
    """``tinysr train``: train a network, resuming a stopped run."""
    t = sub.add_parser(
        "train", help="train a network (checkpoints, resume, PSNR as it trains)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a network on patches of a training set, evaluating on a test set as it goes.  "
                    "Checkpoints are written atomically to --out; running the same command again resumes from the "
                    "newest one (it says so).  A loss that becomes NaN or explodes stops the run and keeps the last "
                    "good checkpoint.  --recipe fast (default) is tinysr's Adam recipe for a CPU; --recipe paper "
                    "follows the paper (slow: SRCNN's took ~8e8 back-propagations).",
        epilog="examples:\n  tinysr train srcnn --scale 3 --iterations 20000\n"
               "  tinysr train fsrcnn --scale 3 --data T91 BSD200 --out runs/fsrcnn-x3\n"
               "  tinysr train srcnn --scale 3 --recipe paper --iterations 100000 --variant 9-5-5\n"
               "  tinysr train edsr_baseline --scale 4 --init-from edsr_baseline-x2   # x4 starts from the x2 body")
    t.add_argument("model", help="a registry name (see `tinysr models`): srcnn, fsrcnn, vdsr, ...")
    t.add_argument("--scale", type=argtype("scale"), nargs="+", default=[3],
                   help="upscaling factor (default 3); several (--scale 2 3 4) train one network for all of them "
                        "(VDSR-style networks, MDSR)")
    t.add_argument("--recipe", choices=["fast", "paper"], default="fast", help="training recipe (default fast)")
    t.add_argument("--iterations", type=argtype("iterations"), default=None,
                   help="optimiser steps (default: the recipe's)")
    t.add_argument("--epochs", type=argtype("epochs"), default=None, help="passes over the training patches, instead of "
                                                              "--iterations")
    t.add_argument("--batch-size", type=argtype("batch_size"), default=None,
                   help="patches per step (default: the recipe's)")
    t.add_argument("--patch-size", type=argtype("patch_size"), default=None,
                   help="input patch side in pixels (default: the recipe's; may change on resume)")
    t.add_argument("--lr", type=argtype("lr"), default=None,
                   help="learning rate (default: the recipe's; may change on resume)")
    t.add_argument("--clip", type=argtype("clip"), default=None, metavar="NORM",
                   help="clip the gradients' global L2 norm to NORM, or 'off' (default: the recipe's; may change "
                        "on resume)")
    t.add_argument("--seed", type=argtype("seed"), default=0, help="seeds the initialisation and every crop (default 0)")
    t.add_argument("--data", nargs="+", default=["T91"], help="training sets or folders (default T91)")
    t.add_argument("--eval-data", default="Set5", help="test set evaluated during training, or 'none' "
                                                       "(default Set5)")
    t.add_argument("--eval-every", type=argtype("eval_every"), default=None,
                   help="steps between evaluations (default: 20 per run)")
    t.add_argument("--checkpoint-every", type=argtype("checkpoint_every"), default=None,
                   help="steps between checkpoints (default: a tenth of the run, at most 1000)")
    t.add_argument("--variant", default=None, help="SRCNN filter sizes: 9-1-5 (default), 9-3-5 or 9-5-5")
    t.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    t.add_argument("--out", default=None, help="run folder (default runs/<model>-x<scale>-<recipe>-seed<seed>)")
    t.add_argument("--fresh", action="store_true", help="refuse to continue an earlier run in --out")
    t.add_argument("--init-from", default=None, metavar="WEIGHTS",
                   help="start from trained weights (a shipped name such as edsr_baseline-x2, or a checkpoint): "
                        "parameters of the same name and shape are copied, with a fresh optimiser")
    t.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    t.set_defaults(func=_cmd_train)


def _add_srgan_parser(sub):
    """``tinysr srgan``: SRGAN's adversarial training from a trained SRResNet."""
    g = sub.add_parser(
        "srgan", help="train SRGAN from a trained SRResNet (adversarial + content loss)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Ledig et al. (CVPR 2017): start from a trained SRResNet and train it against a discriminator, "
                    "content loss + adv-weight x adversarial loss.  The content loss is the pixel MSE (the paper's "
                    "SRGAN-MSE) unless --vgg names torchvision's VGG-19 ImageNet file (then the VGG feature loss).  "
                    "Checkpoints of both networks go to --out; the same command resumes a stopped run.",
        epilog="examples:\n  tinysr train srresnet --scale 4 --data T91 BSD200 --out runs/srresnet-x4\n"
               "  tinysr srgan runs/srresnet-x4/step_0020000.npz --data T91 BSD200 --iterations 2000\n"
               "  tinysr srgan runs/srresnet-x4/step_0020000.npz --vgg vgg19-dcbb9e9d.pth --vgg-layer vgg54")
    g.add_argument("generator", help="the SRResNet to start from: a checkpoint or weights file")
    g.add_argument("--data", nargs="+", default=["T91", "BSD200"], help="training sets or folders (default T91 BSD200)")
    g.add_argument("--iterations", type=argtype("iterations"), default=2000, help="generator steps (default 2000)")
    g.add_argument("--batch-size", type=argtype("batch_size"), default=16, help="patches per step (default 16, as the paper)")
    g.add_argument("--patch-size", type=argtype("patch_size"), default=24, help="LR patch side (default 24: 96x96 HR at x4)")
    g.add_argument("--lr", type=argtype("lr"), default=1e-4, help="Adam learning rate of both networks (default 1e-4)")
    g.add_argument("--adv-weight", type=argtype("adv_weight"), default=1e-3, help="weight of the adversarial loss (default 1e-3)")
    g.add_argument("--vgg", default=None, help="torchvision VGG-19 .pth for the VGG content loss, or a Gatys-normalised "
                   "vgg_normalised*.pth (layers up to relu3_1, e.g. --vgg-layer relu2_2) (default: pixel MSE)")
    g.add_argument("--vgg-layer", default="relu5_4", help="VGG layer: vgg22 / vgg54 or a name such as relu5_4")
    g.add_argument("--disc-base", type=argtype("disc_base"), default=64, help="discriminator's first width (default 64, the paper)")
    g.add_argument("--disc-dense", type=argtype("disc_dense"), default=1024, help="discriminator's dense width (default 1024)")
    g.add_argument("--eval-data", default="Set5", help="test set scored during training, or 'none' (default Set5)")
    g.add_argument("--eval-every", type=argtype("eval_every"), default=500, help="steps between evaluations (default 500)")
    g.add_argument("--checkpoint-every", type=argtype("checkpoint_every"), default=100, help="steps between checkpoints (default 100)")
    g.add_argument("--seed", type=argtype("seed"), default=0, help="seeds the discriminator and every crop (default 0)")
    g.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    g.add_argument("--out", default=None, help="run folder (default runs/srgan-x<scale>-seed<seed>)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    g.set_defaults(func=_cmd_srgan)

def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"tinysr: warning: {message}", file=sys.stderr)


def _sentence(e):
    """The exception as one line (messages sometimes carry a line break from a nested error)."""
    text = " ".join(str(e).split())
    if isinstance(e, FileNotFoundError) and not text:
        text = "file not found"
    if isinstance(e, KeyError):            # KeyError quotes its message
        text = text.strip("'\"")
    return text or type(e).__name__


def main(argv=None):
    args = build_parser().parse_args(argv)
    shown, warnings.showwarning = warnings.showwarning, _one_line_warning
    try:
        args.func(args)
    except KeyboardInterrupt:
        extra = (" (the last checkpoint is kept: run the same command to resume)"
                 if args.command in ("train", "srgan") else "")
        print(f"tinysr {args.command}: interrupted{extra}", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except Exception as e:  # one clear sentence for the user
        if os.environ.get("TINYSR_DEBUG"):
            raise
        print(f"tinysr {args.command}: {_sentence(e)}", file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = shown
    return 0


if __name__ == "__main__":
    sys.exit(main())
