"""`fmnist promote`'s rules on files alone: a label moves to a version whose blessing passed
against the version the label names now, or back where it came from; --force overrides the
verdict and says so, never a missing version or a damaged bundle; the version the label
leaves stays served; one writer at a time; models.config is valid whatever happens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fmnist.cli import main
from fmnist.errors import ManifestError, UserError
from fmnist.rollout.blessing import BlessingError, read_blessing
from fmnist.rollout.promote import PromotionPending, PromotionRefused, promote
from fmnist.serving.wire.model_config_file import locked, read_config

NAME = "fashion_mnist"


@pytest.fixture
def base(make_version) -> Path:
    """Versions 1-3 with manifests; models.config serves the latest 2 (2 and 3), stable -> 2."""
    base = make_version(1).parents[1]
    make_version(2)
    make_version(3)
    (base / "models.config").write_text(
        f"model_config_list {{ config {{ name: '{NAME}' base_path: '{base / NAME}' "
        "model_platform: 'tensorflow' model_version_policy { latest { num_versions: 2 } } "
        "version_labels { key: 'stable' value: 2 } } }"
    )
    return base


def labels(base: Path) -> dict[str, int]:
    return dict(read_config(base / "models.config").model_config_list.config[0].version_labels)


def policy(base: Path) -> str:
    entry = read_config(base / "models.config").model_config_list.config[0]
    return " ".join(str(entry.model_version_policy).split())


def test_a_blessed_version_is_promoted_and_the_move_recorded(base: Path, bless) -> None:
    bless(base / NAME / "3", baseline=2)
    done = promote(base, NAME, "stable", 3)
    assert labels(base) == {"stable": 3}
    assert done.changed and not done.forced and done.previous == 2 and not done.policy_changed
    assert done.allowed_by.startswith("blessed ")
    assert done.allowed_by.endswith("compared against version 2")
    (move,) = read_blessing(base / NAME / "3").promotions
    assert move["label"] == "stable" and (move["from"], move["to"], move["forced"]) == (2, 3, False)


def test_the_version_the_label_leaves_stays_served(base: Path, bless) -> None:
    bless(base / NAME / "3", baseline=2)
    promote(base, NAME, "stable", 3)
    (base / NAME / "4").mkdir()  # a newer export: latest 2 would now serve 3 and 4 only
    bless(base / NAME / "4", baseline=3)
    done = promote(base, NAME, "stable", 4, wait_until_loaded=lambda versions: None)
    assert not done.policy_changed  # 3, which stable leaves, is among the latest 2
    rolled_back = promote(base, NAME, "stable", 3)
    assert rolled_back.allowed_by == "rollback: stable named version 3 before version 4"


def test_a_version_the_policy_does_not_serve_is_loaded_before_it_is_labelled(
    base: Path, bless
) -> None:
    bless(base / NAME / "1", baseline=2)
    with pytest.raises(PromotionPending) as pending:
        promote(base, NAME, "stable", 1)
    assert "did not serve version 1: added it (specific 1, 2, 3)" in str(pending.value)
    assert pending.value.exit_code == 2
    assert policy(base) == "specific { versions: 1 versions: 2 versions: 3 }"
    assert labels(base) == {"stable": 2}  # TF Serving would refuse a label on version 1 yet
    done = promote(base, NAME, "stable", 1)  # the server loaded it: the label moves
    assert labels(base) == {"stable": 1} and not done.policy_changed


def test_with_a_server_to_ask_the_label_moves_once_it_loaded_the_version(base: Path, bless) -> None:
    bless(base / NAME / "1", baseline=2)
    seen: list[tuple[set[int], dict[str, int]]] = []
    done = promote(
        base, NAME, "stable", 1, wait_until_loaded=lambda v: seen.append((v, labels(base)))
    )
    assert seen == [({1}, {"stable": 2})]  # asked with the policy written, the label not yet
    assert labels(base) == {"stable": 1} and done.policy_changed
    assert done.policy == "specific 1, 2, 3"


def test_a_server_that_does_not_load_it_leaves_the_label(base: Path, bless) -> None:
    bless(base / NAME / "1", baseline=2)

    def never(versions: set[int]) -> None:
        raise UserError("the server did not load version 1 within 0 s")

    with pytest.raises(UserError, match="did not load version 1"):
        promote(base, NAME, "stable", 1, wait_until_loaded=never)
    assert labels(base) == {"stable": 2}


def test_a_policy_that_serves_them_all_is_left_alone(base: Path, bless) -> None:
    config = base / "models.config"
    config.write_text(config.read_text().replace("latest { num_versions: 2 }", "all { }"))
    bless(base / NAME / "1", baseline=2)
    assert not promote(base, NAME, "stable", 1).policy_changed


def test_moving_back_undoes_the_last_move_without_a_blessing(base: Path, bless) -> None:
    bless(base / NAME / "3", baseline=2)
    promote(base, NAME, "stable", 3)
    done = promote(base, NAME, "stable", 2)  # version 2 was never compared
    assert labels(base) == {"stable": 2}
    assert done.allowed_by == "rollback: stable named version 2 before version 3"


def test_a_first_version_blessed_alone_is_promoted(base: Path, bless) -> None:
    config = base / "models.config"
    config.write_text(config.read_text().replace("version_labels { key: 'stable' value: 2 }", ""))
    bless(base / NAME / "3", baseline=None)
    done = promote(base, NAME, "stable", 3)
    assert labels(base) == {"stable": 3} and done.previous is None
    assert done.allowed_by.endswith("compared alone (first version)")


def test_the_version_it_already_names_changes_nothing(base: Path) -> None:
    before = (base / "models.config").read_bytes()
    done = promote(base, NAME, "stable", 2)
    assert not done.changed and (base / "models.config").read_bytes() == before


def _no_blessing(base: Path, bless) -> None:
    pass


def _failed(base: Path, bless) -> None:
    bless(base / NAME / "3", blessed=False, baseline=2)


def _stale(base: Path, bless) -> None:
    bless(base / NAME / "3", baseline=1)


def _bundle_changed(base: Path, bless) -> None:
    bless(base / NAME / "3", baseline=2)
    manifest = base / NAME / "3" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["created_at"] = "2030-01-01T00:00:00+00:00"  # another manifest, files still intact
    manifest.write_text(json.dumps(data))


def _hostile_blessing(base: Path, bless) -> None:
    (base / NAME / "3" / "blessing.json").write_text('{"schema": "fmnist-deploy/blessing"')


REFUSALS = [
    ("no blessing", _no_blessing, 2, "version 3 has no blessing: run fmnist compare"),
    ("failed", _failed, 1, "failed its comparison against version 2: accuracy changed -0.01"),
    ("stale", _stale, 2, "was judged against version 1, but stable names version 2 now"),
    ("bundle changed", _bundle_changed, 2, "changed since it was judged"),
    ("hostile blessing", _hostile_blessing, 2, "blessing.json: not valid JSON"),
]


@pytest.mark.parametrize(
    ("setup", "code", "message"), [pytest.param(s, c, m, id=n) for n, s, c, m in REFUSALS]
)
def test_a_version_nothing_vouches_for_is_not_promoted(
    base: Path, bless, setup, code: int, message: str
) -> None:
    setup(base, bless)
    before = (base / "models.config").read_bytes()
    with pytest.raises(PromotionRefused) as raised:
        promote(base, NAME, "stable", 3)
    assert message in str(raised.value) and raised.value.exit_code == code
    assert "\n" not in str(raised.value)
    assert (base / "models.config").read_bytes() == before


def test_force_overrides_the_verdict_and_says_so(base: Path, bless) -> None:
    bless(base / NAME / "3", blessed=False, baseline=2)
    done = promote(base, NAME, "stable", 3, force=True)
    assert labels(base) == {"stable": 3} and done.forced
    assert "failed its comparison" in done.forced_over
    (move,) = read_blessing(base / NAME / "3").promotions
    assert move["forced"] and move["reason"].startswith("forced: version 3 failed")


def test_force_on_a_version_without_a_manifest(base: Path) -> None:
    config = base / "models.config"
    config.write_text(config.read_text().replace("latest { num_versions: 2 }", "all { }"))
    (base / NAME / "5").mkdir()  # a SavedModel from elsewhere: no manifest, no blessing
    with pytest.raises(PromotionRefused, match="has no blessing"):
        promote(base, NAME, "stable", 5)
    assert promote(base, NAME, "stable", 5, force=True).forced
    blessing = read_blessing(base / NAME / "5")
    assert not blessing.blessed and not blessing.judged and blessing.manifest_sha256 is None


def test_force_never_promotes_a_missing_version(base: Path) -> None:
    with pytest.raises(UserError, match=r"no version 9 to promote \(versions: 1, 2, 3\)"):
        promote(base, NAME, "stable", 9, force=True)


def test_force_never_promotes_a_damaged_bundle(base: Path, bless) -> None:
    bless(base / NAME / "3", baseline=2)
    (base / NAME / "3" / "model_int8.tflite").write_bytes(b"tampered")
    with pytest.raises(ManifestError, match="does not match the manifest"):
        promote(base, NAME, "stable", 3, force=True)
    assert labels(base) == {"stable": 2}


def test_a_second_promote_waits_then_fails_and_changes_nothing(base: Path, bless) -> None:
    bless(base / NAME / "3", baseline=2)
    before = (base / "models.config").read_bytes()
    with locked(base / "models.config"), pytest.raises(UserError, match="another writer"):
        promote(base, NAME, "stable", 3, lock_timeout=0.1)
    assert (base / "models.config").read_bytes() == before


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda base: (base / "models.config").unlink(), "models.config: no such file"),
        (
            lambda base: (base / "models.config").write_text("model_config_list { }"),
            r"no model 'fashion_mnist' \(fmnist export adds it\)",
        ),
        (
            lambda base: (base / "models.config").write_text("model_config_list { config {"),
            "not a valid TF Serving model config",
        ),
    ],
    ids=["no config", "another model", "broken config"],
)
def test_configs_promote_cannot_use_are_one_line_errors(base: Path, edit, message: str) -> None:
    edit(base)
    with pytest.raises(UserError, match=message):
        promote(base, NAME, "stable", 3)


def test_labels_are_checked_as_tf_serving_names_them(base: Path) -> None:
    with pytest.raises(UserError, match="TF Serving labels start with a letter"):
        promote(base, NAME, "2nd", 3)


HOSTILE_BLESSINGS = [
    ("not json", b"{", "not valid JSON"),
    ("nested", b"[" * 100_000, "nested too deeply"),
    ("another schema", b'{"schema": "x"}', "not an fmnist-deploy blessing"),
    (
        "newer",
        b'{"schema": "fmnist-deploy/blessing", "schema_version": 9}',
        "schema version 9 is newer",
    ),
    (
        "blessed text",
        b'{"schema": "fmnist-deploy/blessing", "schema_version": 1, "blessed": "yes"}',
        "blessed must be true or false",
    ),
    (
        "promotions",
        b'{"schema": "fmnist-deploy/blessing", "schema_version": 1, "blessed": true,'
        b' "model_version": 2, "promotions": [{"label": 1}]}',
        "promotions must be a list",
    ),
    ("huge", b" " * (9 << 20), "too large for a blessing"),
]


@pytest.mark.parametrize(
    ("content", "message"), [pytest.param(c, m, id=n) for n, c, m in HOSTILE_BLESSINGS]
)
def test_hostile_blessings_are_one_line_errors(tmp_path: Path, content: bytes, message: str):
    (tmp_path / "blessing.json").write_bytes(content)
    with pytest.raises(BlessingError) as raised:
        read_blessing(tmp_path)
    assert message in str(raised.value) and "\n" not in str(raised.value)


# --- the command ----------------------------------------------------------------------------


def test_the_command_states_a_forced_move(base: Path, bless, capsys) -> None:
    bless(base / NAME / "3", blessed=False, baseline=2)
    assert main(["promote", str(base), "--label", "stable", "--to", "3"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fmnist promote: error: version 3 failed its comparison")
    assert main(["promote", str(base), "--label", "stable", "--to", "3", "--force"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "stable: fashion_mnist version 2 -> version 3"
    assert out[1].startswith("FORCED (--force): version 3 failed its comparison")
    assert out[2] == f"updated {base / 'models.config'} (version policy latest 2)"
