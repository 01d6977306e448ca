"""System level: the README's two set-up commands are what CI runs, the demo trains, and the CLI
speaks in sentences."""
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_commands():
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- setup-commands.*?-->\s*```bash\n(.*?)```\s*<!-- /setup-commands -->", text, re.S)
    assert block, "README.md must keep its set-up block between the setup-commands markers"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_exactly_two_setup_commands():
    cmds = readme_commands()
    assert len(cmds) == 2
    # the main job, offline: the shipped FSRCNN upscales a builtin photo and compares it with bicubic
    assert "pip install -e ." in cmds[0] and "tinysr upscale builtin:" in cmds[0] and "--compare" in cmds[0]
    assert '".[test]"' in cmds[1] and cmds[1].rstrip().endswith("pytest")


def test_readme_is_short_and_its_links_resolve():
    """The README is the front page (at most 150 lines); everything else lives in docs/, and every relative
    link in it names a file that exists."""
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 150, "README.md grew past 150 lines: move the detail into a page under docs/"
    links = re.findall(r"\]\((?!https?://|#)([^)#]+)", text)
    assert links, "the README links to its docs pages"
    missing = [link for link in links if not (REPO / link).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_ci_runs_the_readme_commands():
    ci = (REPO / ".ci" / "run").read_text()
    assert "setup-commands" in ci and "README.md" in ci


def test_demo_loss_falls():
    from tinysr import demo
    lines = []
    losses = demo.run(steps=120, log_every=60, out=lines.append)
    assert sum(losses[-20:]) < 0.6 * sum(losses[:20])
    assert any("held-out loss" in line for line in lines)


def test_cli_errors_are_sentences():
    r = subprocess.run([sys.executable, "-m", "tinysr", "eval", "srcnn-x9"], capture_output=True, text=True)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr


def test_cli_eval_bicubic_prints_protocol_and_paper(data_dir, paper_table):
    import os
    env = dict(os.environ, TINYSR_DATA=str(data_dir))
    r = subprocess.run([sys.executable, "-m", "tinysr", "eval", "bicubic", "--dataset", "Set5", "--scale", "3",
                        "--summary"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "protocol: Y of BT.601" in r.stdout
    mean = float(re.search(r"PSNR ([\d.]+) dB", r.stdout).group(1))
    assert abs(mean - paper_table["Bicubic"]["Set5"]["x3"][0]) < 0.02


def test_cli_missing_dataset_is_one_sentence(tmp_path):
    import os
    env = dict(os.environ, TINYSR_DATA=str(tmp_path), TINYSR_CACHE=str(tmp_path / "cache"), TINYSR_OFFLINE="1")
    r = subprocess.run([sys.executable, "-m", "tinysr", "eval", "bicubic", "--dataset", "Set5"], capture_output=True,
                       text=True, env=env)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "Set5" in r.stderr and "Put its images in" in r.stderr
