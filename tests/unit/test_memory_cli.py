"""``tokenguard memory``: arguments, JSON keys, exit codes, offline use."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from pytest_tokenguard.cli.memory import add_memory_parser, run_memory
from pytest_tokenguard.counting import count_image
from pytest_tokenguard.specs import KNOWN_SPECS
from tests.helpers import checkpoint_folder


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="tokenguard")
    add_memory_parser(top.add_subparsers(dest="command", required=True))
    return top


def run(*argv: str) -> tuple[int, str, str]:
    args = parser().parse_args(["memory", *argv])
    out, err = io.StringIO(), io.StringIO()
    assert args.func is run_memory
    code = run_memory(args, out, err)
    return code, out.getvalue(), err.getvalue()


def test_json_has_the_promised_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKENGUARD_MODEL", raising=False)  # the default model is asserted
    code, out, _ = run("--longest-edge", "1536", "--json")
    assert code == 0
    data = json.loads(out)
    for key in ("peak_gib", "weights_gib", "activations_gib"):
        assert isinstance(data[key], float)
    spec = KNOWN_SPECS["HuggingFaceTB/SmolVLM2-2.2B-Instruct"]
    assert data["tiles_per_sample"] == 4 * count_image(384, 384, 1536, spec).patches
    assert data["model"] == "HuggingFaceTB/SmolVLM2-2.2B-Instruct"


def test_options_reach_the_model() -> None:
    def peak(*argv: str) -> dict[str, float]:
        return json.loads(run("--json", *argv)[1])  # type: ignore[no-any-return]

    base = peak("--longest-edge", "768")
    assert peak("--longest-edge", "768", "--batch", "2")["activations_gib"] > base[
        "activations_gib"]
    assert peak("--longest-edge", "768", "--images", "8")["activations_gib"] > base[
        "activations_gib"]
    assert peak("--longest-edge", "768", "--text-tokens", "4000")["activations_gib"] > base[
        "activations_gib"]
    assert peak("--longest-edge", "768", "--gradient-checkpointing")["activations_gib"] < base[
        "activations_gib"]
    # a 2:1 image at 768 is cut 1x2 plus the global image: 3 tiles, not 5
    assert peak("--longest-edge", "768", "--image-size", "200x100")["tiles_per_sample"] == 12
    assert base["tiles_per_sample"] == 20


def test_text_output_names_phase_and_terms() -> None:
    code, out, _ = run("--longest-edge", "384")
    assert code == 0
    assert "predicted peak" in out
    assert "activations, vision" in out
    assert "optimizer (adamw-fused)" in out
    assert "longest_edge=384" in out


@pytest.mark.parametrize(("limit", "code"), [("80 GB", 1), ("100 GiB", 0)])
def test_limit_sets_the_exit_status(limit: str, code: int) -> None:
    got, out, _ = run("--longest-edge", "1536", "--limit", limit)
    assert got == code
    assert out.splitlines()[-1].startswith("FAIL " if code else "PASS ")


def test_limit_in_json() -> None:
    code, out, _ = run("--longest-edge", "1536", "--limit", "24 GiB", "--json")
    data = json.loads(out)
    assert code == 1
    assert data["passed"] is False
    assert data["message"].startswith("The step is limited to 24.0GiB but its predicted GPU peak")
    assert "longest_edge=1536" in data["message"]


def test_bad_limit_unit_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        parser().parse_args(["memory", "--limit", "24 gigs"])
    assert excinfo.value.code == 2
    assert "unknown unit 'gigs'" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--batch", "0"], ["--images", "-1"], ["--image-size", "big"]])
def test_bad_numbers_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["memory", *argv])


def test_unknown_model_exits_2() -> None:
    code, out, err = run("--model", "someone/else")
    assert code == 2
    assert out == ""
    assert "unknown model 'someone/else'" in err


def test_model_folder_gives_the_same_answer_as_the_hub_id() -> None:
    """``--model FOLDER`` reads the folder's config.json and processor files; the real
    files against the built-in values: tests/oracle/test_real_files.py."""
    folder = checkpoint_folder("500M")
    by_folder = json.loads(run("--model", str(folder), "--json")[1])
    by_id = json.loads(run("--model", "HuggingFaceTB/SmolVLM2-500M-Video-Instruct", "--json")[1])
    by_folder.pop("model")
    by_id.pop("model")
    assert by_folder == by_id


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--images", "0", "--text-tokens", "0"], "nothing to train on"),
        (["--gpus", "4"], "--gpus 4 needs --sharding: ddp or fsdp"),
        (["--gpus", "2", "--sharding", "fsdp", "--freeze", "vision", "--freeze", "text"],
         "freezes everything"),
        (["--sharding", "fsdp"], "--sharding fsdp with --gpus 1"),
        (["--lora-rank", "8", "--lora-targets", "self_attn"], "names no Linear module"),
        (["--model", "/nonexistent/HuggingFaceTB/SmolVLM2-2.2B-Instruct"],
         "--model '/nonexistent/HuggingFaceTB/SmolVLM2-2.2B-Instruct': no such folder"),
    ],
)
def test_bad_recipes_exit_2(argv: list[str], message: str) -> None:
    code, out, err = run(*argv)
    assert code == 2
    assert out == ""
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [["--lora-rank", "0"], ["--gpus", "0"], ["--batch", "-2"]])
def test_zero_or_negative_counts_say_1_or_more(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as excinfo:
        parser().parse_args(["memory", *argv])
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert "use 1 or more" in err
    assert "0 or more" not in err


def test_help_lists_every_recipe_option_and_no_double_percent(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["memory", "--help"])
    out = capsys.readouterr().out
    assert "%%" not in out
    for option in ("--optimizer", "--lora-rank", "--lora-targets", "--freeze", "--gpus",
                   "--sharding"):
        assert option in out


def test_lora_and_fsdp_lower_the_prediction() -> None:
    full = json.loads(run("--json", "--longest-edge", "384")[1])
    lora = json.loads(run("--json", "--longest-edge", "384", "--lora-rank", "8")[1])
    fsdp = json.loads(run("--json", "--longest-edge", "384", "--gpus", "8",
                          "--sharding", "fsdp")[1])
    assert lora["peak_bytes"] < full["peak_bytes"]
    assert fsdp["peak_bytes"] < full["peak_bytes"]
    assert lora["trained_parameters"] < full["trained_parameters"]


# --- hostile input (issue 13's memory items), worded for this command ------------------


def test_missing_model_folder_names_the_path_and_the_option() -> None:
    code, out, err = run("--model", "/no/such/place/SmolVLM2-2.2B-Instruct")
    assert (code, out) == (2, "")
    assert err == ("tokenguard memory: --model '/no/such/place/SmolVLM2-2.2B-Instruct': no "
                   "such folder; give a SmolVLM checkpoint folder (with its config.json) or a "
                   "hub id such as HuggingFaceTB/SmolVLM2-2.2B-Instruct\n")
    assert "--tokenguard-model" not in err  # an option of the plugin, not of this command


@pytest.mark.parametrize("model", ["./SmolVLM2-2.2B-Instruct", "~/no-such-model-here",
                                   "a/b/SmolVLM2-2.2B-Instruct"])
def test_path_like_models_are_never_priced_as_a_hub_id(model: str) -> None:
    code, _, err = run("--model", model)
    assert code == 2
    assert f"--model {model!r}: no such folder" in err


def test_a_folder_without_processor_files_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    code, _, err = run("--model", str(tmp_path))
    assert code == 2
    assert err.startswith(f"tokenguard memory: --model {str(tmp_path)!r}: the folder has no "
                          "preprocessor_config.json")


def test_a_sample_of_nothing_is_refused_with_the_options_named() -> None:
    code, out, err = run("--images", "0", "--text-tokens", "0")
    assert (code, out) == (2, "")
    assert err.startswith("tokenguard memory: --images 0 and --text-tokens 0: a sample of "
                          "nothing")
    assert err.count("\n") == 1


@pytest.mark.parametrize(("argv", "message"), [
    (["--lora-dropout", "2"], "--lora-dropout 2.0 is not accepted; --lora-dropout takes a "
                              "number from 0 to below 1"),
    (["--lora-rank", "4", "--lora-targets", "nothing"], "--lora-targets: 'nothing' matches "
                                                        "no module"),
    (["--images", str(2**31)], f"--images {2**31} is not accepted; --images takes an "
                               "integer, at most 2147483647"),
    (["--image-size", f"{2**31}x1"], "--image-size (2147483648, 1) is not accepted"),
])
def test_model_messages_name_the_options_of_this_command(argv: list[str], message: str) -> None:
    code, _, err = run(*argv)
    assert code == 2
    assert message in err
    assert "=" not in err.split(": ", 1)[1].split(";")[0]  # no keyword=value spelling


def test_bare_limit_is_a_usage_error_naming_the_input(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        parser().parse_args(["memory", "--limit", "24"])
    assert excinfo.value.code == 2
    assert "size '24' has no unit, so it means 24 bytes; write 24G or 24GiB" in (
        capsys.readouterr().err)


@pytest.mark.parametrize("json_output", [False, True])
def test_limit_failure_is_worded_for_the_command_line(json_output: bool) -> None:
    code, out, err = run("--limit", "1G", *(["--json"] if json_output else []))
    assert (code, err) == (1, "")
    message = json.loads(out)["message"] if json_output else out.splitlines()[-1]
    expected = "The step is limited to 1.0GiB but its predicted GPU peak was "
    assert message.startswith(expected if json_output else "FAIL " + expected)
    assert "Test was limited" not in out
    assert "longest_edge=" in message  # names the shape it predicted


def test_a_closed_stdout_is_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    args = parser().parse_args(["memory"])
    assert run_memory(args, Closed(), io.StringIO()) == 1  # as count and split: not all written


# --- issue 20: the loop, and the options from the one definition of a step -----------


def test_every_step_keyword_is_an_option_and_nothing_else() -> None:
    """The command's step options are StepShape's fields, declared once: a keyword the
    marker takes is an option here, and no step option exists that the marker lacks."""
    from pytest_tokenguard.gpu.model import shape_fields

    top = argparse.ArgumentParser(prog="tokenguard")
    sub = add_memory_parser(top.add_subparsers())
    options = {opt for action in sub._actions for opt in action.option_strings}
    step = {spec.option for spec in shape_fields()}
    assert step <= options
    assert options - step == {"-h", "--help", "--model", "--limit", "--json"}


def test_loop_defaults_to_the_trainer_and_each_loop_is_priced() -> None:
    """Issue 20's case (256M, 1536, four 640x480 photos, batch 2): the Trainer's step
    measured 37.3 GiB, SFTTrainer's 34.8, the manual loop predicted 31.4 (16% low)."""
    argv = ("--json", "--model", "HuggingFaceTB/SmolVLM2-256M-Video-Instruct",
            "--longest-edge", "1536", "--image-size", "640x480", "--batch", "2")
    peaks = {}
    for loop in ("trainer", "sft-trainer", "manual"):
        code, out, _ = run(*argv, "--loop", loop)
        assert code == 0
        peaks[loop] = json.loads(out)["peak_gib"]
        assert json.loads(out)["recipe"].startswith(loop)
    assert json.loads(run(*argv)[1])["peak_gib"] == peaks["trainer"]
    assert peaks["manual"] < peaks["sft-trainer"] < peaks["trainer"]
    assert peaks["trainer"] == pytest.approx(37.3, rel=0.02)


def test_mixed_precision_is_predicted_and_fp16_autocast_refused() -> None:
    """Issue 20: ``bf16=True`` on an fp32 model is a recipe (measured:
    results-h100-qwen.json); ``bf16=True`` on an fp16 model is not."""
    code, out, _ = run("--dtype", "float32", "--json")
    assert code == 0
    assert json.loads(out)["recipe"].startswith("trainer, mixed precision")
    code, _, err = run("--dtype", "float16")
    assert code == 2
    assert "--loop trainer with --dtype float16" in err
    assert "--loop manual" in err
