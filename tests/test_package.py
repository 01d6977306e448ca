"""``tinysr.train`` is the training function, whatever is imported before or after it; the training loop
is the module ``tinysr.trainer`` and no module is named ``tinysr.train``."""
import subprocess
import sys


def test_tinysr_train_stays_the_function_after_importing_the_training_loop():
    code = ("import tinysr.trainer\nfrom tinysr.trainer import Trainer\nimport tinysr\n"
            "assert callable(tinysr.train) and tinysr.train.__module__ == 'tinysr.fit', tinysr.train\n"
            "assert tinysr.train is tinysr.api.train\n"
            "import importlib.util\nassert importlib.util.find_spec('tinysr.train') is None\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
