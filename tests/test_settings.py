"""Settings: env vars and flags reach the nested config; secrets never printed."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from server import settings
from server.config import ServerConfig


def test_env_overrides_defaults_in_nested_configs():
    config = settings.from_env(ServerConfig, {"ABRAR_PORT": "9000", "ABRAR_DEVICE": "cpu",
                                              "ABRAR_DOWNLOAD": "no", "ABRAR_DATA_DIR": "/tmp/d"})
    assert config.port == 9000 and config.model.device == "cpu"
    assert config.model.download is False and config.data_dir == Path("/tmp/d")


def test_flags_override_env():
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, ServerConfig)
    args = parser.parse_args(["--port", "9100", "--model-precision", "fp32"])
    config = settings.apply_args(settings.from_env(ServerConfig, {"ABRAR_PORT": "9000"}), args)
    assert config.port == 9100 and config.model.precision == "fp32"


def test_bad_env_value_is_a_clear_exit():
    with pytest.raises(SystemExit, match="ABRAR_PORT"):
        settings.from_env(ServerConfig, {"ABRAR_PORT": "eighty"})


def test_secrets_are_masked():
    config = settings.from_env(ServerConfig, {"ABRAR_API_KEY": "hunter2"})
    rows = dict(settings.describe(config))
    assert rows["api_key"] == "***" and "hunter2" not in repr(rows)


def test_serve_help_lists_env_vars(capsys):
    from server.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    out = capsys.readouterr().out
    assert "ABRAR_PORT" in out and "ABRAR_API_KEY" in out
    assert "--models-dir" in out and "ABRAR_MODELS_DIR" in out


def test_models_dir_reaches_the_runtime_and_the_startup_config(tmp_path):
    from server.config import ServerConfig

    config = settings.from_env(ServerConfig, {"ABRAR_MODELS_DIR": str(tmp_path)})
    assert config.runtime_config().models_dir == tmp_path
    assert dict(settings.describe(config))["models_dir"] == repr(tmp_path)
