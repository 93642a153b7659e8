"""``prometheus.mapping.preset``: each stack's selectors, the fields given beside a preset win, one clear
line for a preset that does not exist."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from heteroscale.config.controller import load_controller_config
from heteroscale.config.presets import POD_LABELS, PRESETS, MappingConfig, sanitised
from heteroscale.domain.hardware import Role
from heteroscale.errors import ConfigError
from heteroscale.metrics.promql import Engine, Queries

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "controller-local.yaml"


@pytest.mark.parametrize(
    ("preset", "engine", "decode_matcher", "decode_pod_label"),
    [
        ("vllm", Engine.VLLM, 'role="decode"', 'label_heteroscale_io_role="decode"'),
        ("sglang", Engine.SGLANG, 'role="decode"', 'label_heteroscale_io_role="decode"'),
        ("dynamo", Engine.VLLM, 'dynamo_component="backend"', 'label_nvidia_com_dynamo_sub_component_type="decode"'),
        ("llm-d", Engine.VLLM, 'llm_d_ai_role="decode"', 'label_llm_d_ai_role="decode"'),
        ("aibrix", Engine.VLLM, 'role_name="decode"', 'label_role_name="decode"'),
        ("kthena", Engine.VLLM, 'modelserving_volcano_sh_role="decode"', 'label_modelserving_volcano_sh_role="decode"'),
    ],
)
def test_each_preset_selects_its_stacks_series_and_pods(
    preset: str, engine: Engine, decode_matcher: str, decode_pod_label: str
) -> None:
    mapping = MappingConfig.model_validate({"preset": preset}).to_mapping()
    q = Queries(mapping, "chat", 60.0, 30.0)
    assert mapping.engine is engine
    assert decode_matcher in q.decode_tps()
    assert decode_pod_label in q.gpu_util(Role.DECODE) and "kube_pod_labels" in q.gpu_util(Role.DECODE)
    assert '"chat"' in q.engine_metric("x", Role.DECODE)  # the service's own series
    # the role label the join reads is the one the PodMonitor and kube-state-metrics are told to carry
    role_key = POD_LABELS[preset][1]
    assert sanitised(role_key, "label_") in decode_pod_label


def test_every_preset_is_tested_and_configurable() -> None:
    assert set(PRESETS) == set(POD_LABELS) == {"vllm", "sglang", "dynamo", "llm-d", "aibrix", "kthena"}


def test_fields_beside_a_preset_win_and_the_join_merges_field_by_field() -> None:
    config = MappingConfig.model_validate(
        {
            "preset": "llm-d",
            "decode_selector": 'llm_d_ai_role=~"decode|both"',
            "gpu_join": {"pod_label": "exported_pod"},
            "dynamo_prefix": "mine_",
        }
    )
    assert config.decode_selector == 'llm_d_ai_role=~"decode|both"'
    assert config.prefill_selector == 'llm_d_ai_role="prefill"'  # from the preset
    assert config.gpu_join is not None
    assert config.gpu_join.pod_label == "exported_pod"
    assert config.gpu_join.decode_selector == 'label_llm_d_ai_role="decode"'
    assert Queries(config.to_mapping(), "m", 60.0).dynamo_metric("requests_total").startswith('{__name__="mine_')


def test_a_null_join_reads_dcgm_series_by_their_own_labels() -> None:
    mapping = MappingConfig.model_validate({"preset": "vllm", "gpu_join": None}).to_mapping()
    query = Queries(mapping, "chat", 60.0).gpu_util(Role.DECODE)
    assert "kube_pod_labels" not in query and 'role="decode"' in query


def test_an_unknown_preset_is_one_line_naming_the_field(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["prometheus"]["mapping"] = {"preset": "triton"}
    path = tmp_path / "controller.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_controller_config(path)
    message = str(err.value)
    assert "prometheus.mapping.preset" in message and "\n" not in message
