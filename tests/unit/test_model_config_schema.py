"""The project's ModelServerConfig reads TF Serving's config files as the official message
does (policies, labels), and refuses what it does not declare."""

from __future__ import annotations

import pytest
from google.protobuf import text_format

from fmnist.serving.server.core.config import models_from_proto
from fmnist.serving.wire.messages import ModelServerConfig

CONFIG = """
model_config_list {
  config {
    name: "fashion_mnist"
    base_path: "%s"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
  config {
    name: "latest_two"
    base_path: "%s"
    model_version_policy { latest { num_versions: 2 } }
  }
  config { name: "every" base_path: "%s" model_version_policy { all {} } }
}
"""


def test_declared_schema_reads_policies_and_labels(tmp_path) -> None:
    config = ModelServerConfig()
    text_format.Parse(CONFIG % ((tmp_path,) * 3), config)
    first, second, third = models_from_proto(config, "models.config")
    assert (first.policy.kind, first.policy.versions) == ("specific", (1, 2))
    assert dict(first.labels) == {"stable": 1, "canary": 2}
    assert (second.policy.kind, second.policy.num_versions) == ("latest", 2)
    assert third.policy.kind == "all"


def test_declared_schema_refuses_unknown_fields() -> None:
    with pytest.raises(text_format.ParseError, match="base_pth"):
        text_format.Parse('model_config_list { config { base_pth: "/m" } }', ModelServerConfig())
