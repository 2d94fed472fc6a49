"""The `meshrecon` command in-process: dispatch, registration, config names, zoo, --no-eval."""

from __future__ import annotations

import json
import os
import sys

import pytest
from toy_task import toy_opts

import meshrecon.cli as cli
from meshrecon.cli.common import resolve_config_file
from meshrecon.model_zoo import get_config_file


def test_help_lists_every_subcommand(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, sub in cli.SUBCOMMANDS.items():
        assert f"  {name}" in out and sub.help in out
    assert cli.main([]) == 2  # no subcommand: usage, failure status
    assert cli.main(["trian"]) == 2
    assert "did you mean 'train'" in capsys.readouterr().err


def test_every_subcommand_has_a_help(capsys):
    """Each registered module imports, and its --help names the subcommand and exits 0."""
    for name in cli.SUBCOMMANDS:
        with pytest.raises(SystemExit) as exc:
            cli.main([name, "--help"])
        assert exc.value.code == 0, name
        assert f"meshrecon {name}" in capsys.readouterr().out, name


def test_registered_subcommand_runs_with_its_name_as_prog(tmp_path, monkeypatch, capsys):
    (tmp_path / "hello_cmd.py").write_text(
        "import argparse\n"
        "def main(argv=None):\n"
        "    p = argparse.ArgumentParser()\n"
        "    p.add_argument('--who', default='world')\n"
        "    a = p.parse_args(argv)\n"
        "    print(p.prog, a.who)\n"
        "    return 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "SUBCOMMANDS", dict(cli.SUBCOMMANDS))
    cli.register_subcommand("say-hello", "hello_cmd", "print a greeting", prefix=["--who", "x"])
    argv0 = sys.argv[0]
    assert cli.main(["say-hello", "--who", "you"]) == 3
    assert capsys.readouterr().out.strip() == "meshrecon say-hello you"
    assert sys.argv[0] == argv0  # restored
    assert cli.main(["say-hello"]) == 3  # the prefix comes first, the user's arguments win
    assert capsys.readouterr().out.strip() == "meshrecon say-hello x"
    with pytest.raises(ValueError, match="already registered"):
        cli.register_subcommand("train", "hello_cmd", "again")
    with pytest.raises(ValueError, match="must be a word"):
        cli.register_subcommand("--x", "hello_cmd", "bad")


def test_config_file_is_a_path_or_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not a clone: configs/ is not here
    shipped = get_config_file("synthetic/voxmesh.yaml")
    for name in ("synthetic/voxmesh.yaml", "synthetic/voxmesh", "configs/synthetic/voxmesh.yaml"):
        assert resolve_config_file(name) == shipped
    own = tmp_path / "synthetic" / "voxmesh.yaml"  # a file of the user's wins over the zoo
    own.parent.mkdir()
    own.write_text("SEED: 3\n")
    assert resolve_config_file(str(own)) == str(own)
    with pytest.raises(FileNotFoundError, match="did you mean synthetic/voxmesh.yaml"):
        resolve_config_file("synthetic/voxmseh.yaml")
    with pytest.raises(FileNotFoundError, match="mean shapenet/psgn.yaml or synthetic/psgn.yaml"):
        resolve_config_file("psgn")  # the folder left out: every shipped file of that name
    with pytest.raises(FileNotFoundError) as err:
        resolve_config_file("nope.yaml")
    assert "did you mean" not in str(err.value)


def test_train_rejects_unknown_config_and_contradictory_flags(capsys):
    from meshrecon.cli.train_net import invoke_main

    with pytest.raises(SystemExit) as exc:
        invoke_main(["--config-file", "no/such_config.yaml"])
    assert exc.value.code == 2
    assert "'no/such_config.yaml' is neither a file nor a config shipped" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        invoke_main(["--eval-only", "--no-eval"])
    assert "contradict" in capsys.readouterr().err


def test_no_eval_trains_without_evaluating_and_says_how_to_evaluate(tmp_path, caplog):
    from meshrecon.cli.train_net import invoke_main

    out = tmp_path / "no_eval"
    invoke_main(["--no-eval", *map(str, toy_opts(str(out), **{"SOLVER.MAX_ITER": 3}))])
    assert (out / "model_final.pth").is_file()
    assert not (out / "inference").exists()
    assert "EVAL_AFTER_TRAIN: false" in (out / "config.yaml").read_text()
    log = (out / "log.txt").read_text()
    assert "No evaluation during or after training" in log
    assert f"meshrecon eval --config-file {out / 'config.yaml'}" in log

    # With a validation split, --no-eval leaves TEST.EVAL_PERIOD (the validation's pace).
    from meshrecon.cli.train_net import build_parser, setup

    opts = toy_opts(
        str(tmp_path / "val"), **{"TEST.EVAL_PERIOD": 5, "DATASETS.VAL": ("toy_train",)}
    )
    cfg = setup(build_parser().parse_args(["--no-eval", *map(str, opts)]))
    assert cfg.TEST.EVAL_PERIOD == 5 and not cfg.TEST.EVAL_AFTER_TRAIN

    out = tmp_path / "with_eval"
    invoke_main([*map(str, toy_opts(str(out), **{"SOLVER.MAX_ITER": 3}))])
    results = json.loads((out / "inference" / "toy_test" / "results.json").read_text())
    assert results["toy"]["count"] == 13
    log = (out / "log.txt").read_text()
    assert "Evaluation on toy_test after training (--no-eval skips it)" in log
    assert (
        f"Metrics of toy_test written to {out / 'inference' / 'toy_test' / 'results.json'}" in log
    )


def test_zoo_lists_weights_and_sees_the_cache(tmp_path, monkeypatch, capsys):
    from meshrecon.cli import zoo

    monkeypatch.setenv("MESHRECON_CACHE", str(tmp_path / "cache"))
    (entry,) = zoo.list_zoo("pix3d/meshrcnn_R50_FPN")
    assert entry.released == "meshrcnn://meshrcnn_R50.pth" and not entry.released_cached
    assert entry.init.startswith("detectron2://") and not entry.init_cached
    assert zoo.main(["pix3d/meshrcnn_R50_FPN", "--urls"]) == 0
    out = capsys.readouterr().out
    assert "meshrcnn://meshrcnn_R50.pth [not cached]" in out
    url, path = zoo._cached(entry.released)
    assert url.startswith("https://") and url.endswith("/meshrcnn_R50.pth") and url in out
    assert path.startswith(str(tmp_path / "cache")) and f"-> {path}" in out
    os.makedirs(os.path.dirname(path))
    open(path, "wb").close()  # as if downloaded (or put there by hand, offline)
    assert zoo.list_zoo("pix3d/meshrcnn_R50_FPN")[0].released_cached == path
    assert zoo.main(["pix3d/meshrcnn_R50_FPN"]) == 0
    assert "meshrcnn://meshrcnn_R50.pth [cached]" in capsys.readouterr().out
    # Every shipped config is listed once (bases on request); JSON for scripts.
    from meshrecon.model_zoo import list_configs

    assert zoo.main(["--json", "--bases"]) == 0
    listed = [e["config"] for e in json.loads(capsys.readouterr().out)]
    assert listed == list_configs()
    assert zoo.main(["no-such-config"]) == 1


def test_wait_policy_is_set_before_torch_and_the_users_value_kept():
    """The command sets OMP_WAIT_POLICY=PASSIVE before anything imports torch (OpenMP reads
    it once, at load), unless the user chose a value; --help imports no torch at all."""
    import subprocess

    code = (
        "import os, sys; import meshrecon.cli as c; assert 'torch' not in sys.modules; "
        "c.main(['--help']); assert 'torch' not in sys.modules; "
        "print('policy', os.environ['OMP_WAIT_POLICY'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    for given, expected in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        if given:
            env["OMP_WAIT_POLICY"] = given
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout
        assert f"policy {expected}" in out
