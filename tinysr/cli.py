"""The ``tinysr`` command line: a thin wrapper over the Python API.

Errors reach the user as one sentence, not a traceback (set ``TINYSR_DEBUG=1`` for the traceback).
"""
import argparse
import os
import sys


def _cmd_demo(args):
    from . import demo
    demo.run(steps=args.steps)


def _cmd_models(args):
    from . import models
    print(models.format_models_table())


def _cmd_eval(args):
    from . import metrics
    if args.model != "bicubic":
        raise SystemExit("tinysr eval: only 'bicubic' can be evaluated so far (trained models come with the "
                         "training pipeline)")
    for dataset in args.dataset:
        for scale in args.scale:
            report = metrics.evaluate_bicubic(dataset, scale)
            paper = metrics.BICUBIC_PAPER.get(report["dataset"], {}).get(scale)
            print(metrics.format_report(report, per_image=not args.summary, paper=paper))


def build_parser():
    p = argparse.ArgumentParser(prog="tinysr", description="Classic super-resolution networks, rebuilt in NumPy.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="train a tiny network for a minute and watch its loss fall")
    d.add_argument("--steps", type=int, default=400, help="training steps (default 400)")
    d.set_defaults(func=_cmd_demo)
    m = sub.add_parser("models", help="list the networks with parameters, receptive field and input convention")
    m.set_defaults(func=_cmd_models)
    e = sub.add_parser("eval", help="PSNR/SSIM of a method on a test set under the papers' protocol")
    e.add_argument("model", help="'bicubic' (the baseline)")
    e.add_argument("--dataset", nargs="+", default=["Set5"], help="test sets (default Set5)")
    e.add_argument("--scale", nargs="+", type=int, default=[3], help="scales (default 3)")
    e.add_argument("--summary", action="store_true", help="only the mean line, not every image")
    e.set_defaults(func=_cmd_eval)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("tinysr: interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except Exception as e:  # one clear sentence for the user
        if os.environ.get("TINYSR_DEBUG"):
            raise
        print(f"tinysr {args.command}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
