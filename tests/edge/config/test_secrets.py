"""edge.config.secrets: every secret comes inline, from a file or from the environment, and
no error message ever shows its value."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config.deployment import ConfigError, parse
from edge.config.secrets import SecretSource, inline_secrets, read_secret

SECRET = "s3cr3t-value-that-must-never-leak"
TOKEN = "purge-token-that-must-never-leak"

BASE: dict[str, object] = {
    "nodes": {
        "a": {"listen": "127.0.0.2:8080", "internal": "127.0.0.2:9080"},
        "b": {"listen": "127.0.0.3:8080", "internal": "127.0.0.3:9080"},
    },
    "origins": {"web": {"servers": ["http://127.0.0.1:8000"]}},
    "routes": [{"host": "*", "origin": "web"}],
}


def _config(cluster: dict[str, object], tokens: list[dict[str, object]] | None = None) -> dict[str, object]:
    data = {**BASE, "cluster": cluster}
    if tokens is not None:
        data["admin"] = {"tokens": tokens}
    return data


class TestReadSecret:
    def test_read_secret_is_none_when_no_spelling_is_given(self) -> None:
        assert read_secret({}, "secret", "cluster") is None

    def test_read_secret_reads_the_file_without_its_trailing_newline(self, tmp_path: Path) -> None:
        path = tmp_path / "s"
        path.write_text(SECRET + "\n")
        assert read_secret({"secret_file": str(path)}, "secret", "cluster") == (SECRET, SecretSource.FILE)

    def test_read_secret_reads_the_named_environment_variable(self) -> None:
        got = read_secret({"secret_env": "EDGE_X"}, "secret", "cluster", env={"EDGE_X": SECRET})
        assert got == (SECRET, SecretSource.ENV)

    def test_read_secret_takes_the_inline_value_as_written(self) -> None:
        assert read_secret({"secret": SECRET}, "secret", "cluster") == (SECRET, SecretSource.INLINE)

    def test_read_secret_refuses_two_spellings_naming_both(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"^cluster\.secret_env: cluster\.secret is set too") as info:
            read_secret({"secret": SECRET, "secret_env": "EDGE_X"}, "secret", "cluster", env={})
        assert SECRET not in str(info.value)

    def test_read_secret_names_the_missing_file(self, tmp_path: Path) -> None:
        missing = tmp_path / "nope"
        with pytest.raises(ConfigError, match=r"^cluster\.secret_file: .*nope: file not found"):
            read_secret({"secret_file": str(missing)}, "secret", "cluster")

    def test_read_secret_names_the_unset_variable(self) -> None:
        with pytest.raises(
            ConfigError, match=r"^cluster\.secret_env: environment variable EDGE_NOPE is not set"
        ):
            read_secret({"secret_env": "EDGE_NOPE"}, "secret", "cluster", env={})

    def test_read_secret_refuses_an_empty_file(self, tmp_path: Path) -> None:
        path = tmp_path / "empty"
        path.write_text("\n")
        with pytest.raises(ConfigError, match=r"^cluster\.secret_file: the secret is empty"):
            read_secret({"secret_file": str(path)}, "secret", "cluster")

    def test_read_secret_refuses_a_file_too_large_to_be_a_secret(self, tmp_path: Path) -> None:
        path = tmp_path / "big"
        path.write_bytes(b"x" * 70_000)
        with pytest.raises(ConfigError, match=r"larger than 65536 bytes"):
            read_secret({"secret_file": str(path)}, "secret", "cluster")


class TestDeploymentSecrets:
    def test_cluster_secret_comes_from_a_file(self, tmp_path: Path) -> None:
        path = tmp_path / "cluster-secret"
        path.write_text(SECRET + "\n")
        cfg = parse(_config({"secret_file": str(path)}), "a")
        assert cfg.cluster is not None and cfg.cluster.secret == SECRET

    def test_cluster_secret_comes_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("EDGE_TEST_CLUSTER_SECRET", SECRET)
        cfg = parse(_config({"secret_env": "EDGE_TEST_CLUSTER_SECRET"}), "a")
        assert cfg.cluster is not None and cfg.cluster.secret == SECRET

    def test_cluster_secret_missing_names_the_file_spelling(self) -> None:
        with pytest.raises(ConfigError, match=r"^cluster\.secret: missing; set secret_file"):
            parse(_config({}), "a")

    def test_admin_token_comes_from_a_file_and_the_environment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "token"
        path.write_text(TOKEN)
        monkeypatch.setenv("EDGE_TEST_TOKEN", TOKEN[::-1])
        tokens = [
            {"name": "ops", "token_file": str(path), "hosts": ["*"]},
            {"name": "ci", "token_env": "EDGE_TEST_TOKEN", "hosts": ["a.test"]},
        ]
        cfg = parse(_config({"secret": SECRET}, tokens), "a")
        assert [t.token for t in cfg.admin.tokens] == [TOKEN, TOKEN[::-1]]

    def test_a_short_token_from_a_file_is_refused_without_showing_it(self, tmp_path: Path) -> None:
        path = tmp_path / "token"
        path.write_text("short-secret")
        with pytest.raises(
            ConfigError, match=r"^admin\.tokens\[0\]\.token_file: expected a secret string"
        ) as info:
            parse(
                _config({"secret": SECRET}, [{"name": "ops", "token_file": str(path), "hosts": ["*"]}]), "a"
            )
        assert "short-secret" not in str(info.value)

    def test_two_tokens_with_one_secret_are_refused_without_showing_it(self) -> None:
        tokens = [{"name": n, "token": TOKEN, "hosts": ["*"]} for n in ("ops", "ci")]
        with pytest.raises(ConfigError, match=r"share a secret") as info:
            parse(_config({"secret": SECRET}, tokens), "a")
        assert TOKEN not in str(info.value)

    def test_repr_of_the_config_shows_no_secret(self, tmp_path: Path) -> None:
        cfg = parse(_config({"secret": SECRET}, [{"name": "ops", "token": TOKEN, "hosts": ["*"]}]), "a")
        text = repr(cfg)
        assert "ops" in text and SECRET not in text and TOKEN not in text


class TestInlineSecrets:
    def test_inline_secrets_names_each_inline_secret_and_no_other(self, tmp_path: Path) -> None:
        data = _config(
            {"secret": SECRET},
            [
                {"name": "ops", "token": TOKEN, "hosts": ["*"]},
                {"name": "ci", "token_file": "/run/t", "hosts": ["*"]},
            ],
        )
        data["origins"] = {
            "bucket": {
                "servers": ["http://127.0.0.1:8000"],
                "request_headers": {
                    "Authorization": "Bearer abc",
                    "X-Api-Key": {"value_env": "KEY"},
                    "X-Forwarded-Host": "www.example.com",
                },
            }
        }
        assert inline_secrets(data) == (
            "cluster.secret",
            "admin.tokens[0].token",
            "origins.bucket.request_headers.Authorization",
        )

    def test_inline_secrets_is_empty_when_every_secret_comes_from_elsewhere(self) -> None:
        data = _config({"secret_file": "/run/s"}, [{"name": "ops", "token_env": "T", "hosts": ["*"]}])
        assert inline_secrets(data) == ()
