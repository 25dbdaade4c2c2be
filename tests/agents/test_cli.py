"""The `sketch-env` program (agents.cli): flags that belong to one trainer are refused on the other."""

from __future__ import annotations


def test_compile_flag_belongs_to_the_fast_trainer(capsys):
    from agents.cli import main

    assert main(["train", "--compile", "--timesteps", "0"]) == 2
    err = capsys.readouterr().err
    assert "--trainer fast" in err and len(err.strip().splitlines()) == 1


def test_help_and_version_import_neither_torch_nor_sb3():
    """`sketch-env --help` (and every command's help, built with it) and `--version` stay light: the parser
    is built from torch-free modules, so it answers in a fraction of a second."""
    import subprocess
    import sys

    code = ("import sys\nfrom agents.cli import main\n"
            "for argv in (['--help'], ['--version'], ['embed', 'train', '--help'], ['train', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('torch', 'stable_baselines3', 'cv2') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip().splitlines()[-1] == "[]"
    assert "sketch-env 0.1.0" in res.stdout or "sketch-env 0" in res.stdout
