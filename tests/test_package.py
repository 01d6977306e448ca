"""``tinysr.train`` is the training function, whatever is imported before or after it."""
import subprocess
import sys


def test_tinysr_train_stays_the_function_after_importing_the_training_loop():
    code = ("import tinysr.trainer\nfrom tinysr.trainer import Trainer\nfrom tinysr.train import Trainer as T2\n"
            "import tinysr\nassert T2 is Trainer, T2\nassert callable(tinysr.train) and "
            "tinysr.train.__module__ == 'tinysr.api', tinysr.train\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
