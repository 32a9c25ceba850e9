"""How the engine names of balena's supervisor are read: its volumes `{appId}_{name}` labelled
with the app uuid only, its networks `{appUuid}_{name}` labelled with the app id only."""

from __future__ import annotations

from agent.model.current import app_network_name, network_app_uuid, volume_app_id

UUID = "0123456789abcdef0123456789abcdef"


def test_a_volume_belongs_to_the_app_its_label_or_its_name_says():
    assert volume_app_id("7_data", {"io.balena.app-id": "7"}) == 7
    assert volume_app_id("7_data", {"io.balena.app-uuid": UUID}) == 7  # balena's supervisor
    assert volume_app_id("7_my_data", {}) == 7
    assert volume_app_id("extra-firmware", {}) == 0
    assert volume_app_id("data_7", {}) == 0


def test_a_network_belongs_to_the_app_uuid_its_label_or_its_name_says():
    assert network_app_uuid("7_default", {"io.balena.app-uuid": UUID}) == UUID
    assert network_app_uuid(f"{UUID}_default", {"io.balena.app-id": "7"}) == UUID
    assert network_app_uuid("7_default", {"io.balena.app-id": "7"}) is None  # an older one's
    assert network_app_uuid("deadbeef_default", {}) is None  # too short for an app uuid


def test_balenas_uuid_named_network_is_used_only_when_ours_does_not_exist():
    assert app_network_name(7, UUID, "default", set()) == "7_default"  # to be created
    assert app_network_name(7, UUID, "default", {f"{UUID}_default"}) == f"{UUID}_default"
    both = {"7_default", f"{UUID}_default"}
    assert app_network_name(7, UUID, "default", both) == "7_default"
