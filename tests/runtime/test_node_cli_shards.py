"""`edgesplit node --shard-cache DIR --standby-blocks N`, and the cluster file's `shards:` section."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from edgesplit.cli.node_cmd import build_config
from edgesplit.cluster.config import ClusterConfig
from edgesplit.node.control_gate import epoch_file_of


def test_shard_cache_flags_reach_the_node_config_and_the_epoch_record_lives_there(tmp_path: Path) -> None:
    config = build_config(
        None, "a", None, None, None, None, None, None, None, shard_cache=tmp_path, standby_blocks=2
    )
    assert (config.shard_cache, config.standby_blocks) == (tmp_path, 2)
    assert epoch_file_of(config) == tmp_path / "highest_epoch"
    with_state = config.model_copy(update={"state_dir": tmp_path / "state"})
    assert epoch_file_of(with_state) == tmp_path / "state" / "highest_epoch"
    assert (
        epoch_file_of(build_config(None, "a", None, None, "builtin:llama-tiny", None, None, None, None))
        is None
    )


def test_cli_refuses_a_negative_standby_count(run_main) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run_main("node", "--id", "a", "--shard-cache", "/tmp/x", "--standby-blocks", "-1")
    assert code == 2 and "standby-blocks" in err


def test_cluster_file_shards_section() -> None:
    base = {"model": "builtin:llama-tiny", "nodes": [{"id": "d", "source": True}]}
    assert ClusterConfig.model_validate(base).shards.fetch is False
    cfg = ClusterConfig.model_validate({**base, "shards": {"fetch": True, "standby_blocks": 1}})
    assert (cfg.shards.fetch, cfg.shards.standby_blocks) == (True, 1)
    for bad in ({"standby_blocks": -1}, {"fetch_all": True}):
        with pytest.raises(ValidationError):
            ClusterConfig.model_validate({**base, "shards": bad})
