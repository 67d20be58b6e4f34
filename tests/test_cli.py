"""The command line: one subcommand per stage, params in --help, one-line errors on bad input."""

import pytest

from mlproject.cli import STAGES
from tests.conftest import run, tiny_params, write_params


def test_help_lists_every_stage(tmp_path):
    result = run(["mlproject", "--help"], tmp_path)
    for stage in STAGES:
        assert stage in result.stdout


def test_stage_help_shows_the_values_params_yaml_holds(tmp_path):
    params = tiny_params(tmp_path)
    params["train"].update(learning_rate=0.05)
    params["train"]["rnn"].update(cell="lstm")
    del params["train"]["patience"]
    params["scrape"]["http"]["delay_seconds"] = 0.25
    write_params(tmp_path, params)
    result = run(["mlproject", "train", "--help"], tmp_path)
    assert "cell = 'lstm' [gru|lstm]\n" in result.stdout and "learning_rate = 0.05\n" in result.stdout
    assert "units = 32\n" in result.stdout  # tiny_params, not the built-in 256
    assert "patience = 2   (built-in default; not set in params.yaml)" in result.stdout
    scrape = run(["mlproject", "scrape", "--help"], tmp_path).stdout
    assert "location" in scrape and "delay_seconds = 0.25\n" in scrape
    other = tmp_path / "other.yaml"
    other.write_text("train: {rnn: {units: 7}}\n")
    assert "units = 7\n" in run(["mlproject", "train", "--params", str(other), "--help"], tmp_path).stdout
    # The chosen kind's settings, not another kind's.
    other.write_text("train: {kind: gpt, gpt: {heads: 8}}\n")
    gpt = run(["mlproject", "train", "--params", str(other), "--help"], tmp_path).stdout
    assert "train.gpt, the settings of kind gpt" in gpt and "heads = 8\n" in gpt and "cell =" not in gpt


def error_of(tmp_path, stage, params):
    write_params(tmp_path, params)
    result = run(["mlproject", stage], tmp_path, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_negative_epochs(tmp_path):
    params = tiny_params(tmp_path)
    params["train"]["epochs"] = -2
    assert "train.epochs = -2: expected a value >= 1" in error_of(tmp_path, "train", params)


def test_unknown_cell(tmp_path):
    params = tiny_params(tmp_path)
    params["train"]["rnn"]["cell"] = "rnn"
    assert "train.rnn.cell = 'rnn': expected one of gru, lstm" in error_of(tmp_path, "train", params)


def test_a_flat_train_key_of_the_old_layout_says_where_it_moved(tmp_path):
    params = tiny_params(tmp_path)
    params["train"]["units"] = 128
    assert error_of(tmp_path, "scrape", params).endswith(
        "train.units: moved to train.rnn.units (and train.window_rnn.units); each kind's own settings "
        "have a section of their own in params.yaml"
    )


def test_missing_source_path_keeps_earlier_documents(tmp_path):
    params = tiny_params(tmp_path)
    params["scrape"]["sources"][0]["location"] = str(tmp_path / "nowhere")
    earlier = tmp_path / "data" / "raw" / "documents.jsonl"
    earlier.parent.mkdir(parents=True)
    earlier.write_text('{"text": "earlier"}\n')
    assert "nowhere does not exist" in error_of(tmp_path, "scrape", params)
    assert earlier.read_text() == '{"text": "earlier"}\n'


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "no documents found"),
        (b"%\n\n%\n", "no documents found"),
    ],
)
def test_empty_corpus(tmp_path, content, expected):
    corpus = tmp_path / "empty.fortunes"
    corpus.write_bytes(content)
    params = tiny_params(tmp_path)
    params["scrape"]["sources"][0]["location"] = str(corpus)
    assert expected in error_of(tmp_path, "scrape", params)


def test_non_utf8_corpus_fails_validation_naming_the_files(tmp_path):
    corpus = tmp_path / "damaged.fortunes"  # UTF-8 with a stray byte in every entry
    corpus.write_bytes(b"\n%\n".join(f"Año {i}: más leña al fuego".encode() + b"\xff" for i in range(200)))
    params = tiny_params(tmp_path)
    params["scrape"]["sources"][0]["location"] = str(corpus)
    write_params(tmp_path, params)
    run(["mlproject", "scrape"], tmp_path)
    message = error_of(tmp_path, "validate", params)
    assert "0 of 200 documents accepted" in message and "data/rejected/documents.jsonl" in message


def test_prompts_file_without_prompts(tmp_path):
    (tmp_path / "prompts.txt").write_text("\n  \n")
    params = tiny_params(tmp_path)
    params["generate"]["prompts_file"] = "prompts.txt"
    assert "generate.prompts_file: prompts.txt holds no prompts" in error_of(tmp_path, "generate", params)


def test_stage_before_its_inputs_exist(tmp_path):
    assert "file not found" in error_of(tmp_path, "tokenize", tiny_params(tmp_path))


def test_an_unreachable_tracking_server_fails_in_one_line_within_seconds(tmp_path):
    import os
    import socket
    import time

    with socket.socket() as probe:  # a port on this machine that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    write_params(tmp_path, tiny_params(tmp_path))
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "default.txt").write_text("El \n")
    os.environ["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{port}"
    try:
        start = time.monotonic()
        line = error_of(tmp_path, "generate", tiny_params(tmp_path))
        assert time.monotonic() - start < 60
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    assert f"mlflow.tracking_uri = http://127.0.0.1:{port}: the tracking store cannot be reached" in line
