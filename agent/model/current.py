"""The current state as read from the engine: containers, images, volumes and networks that
carry the `io.balena.*` labels. Rebuilt from the engine on every reconcile pass, so a restart
(of the agent, or a switch from another supervisor) needs no memory of its own."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# Labels shared with the reference supervisor, so devices can switch agents.
LABEL_SUPERVISED = "io.balena.supervised"
LABEL_APP_ID = "io.balena.app-id"
LABEL_APP_UUID = "io.balena.app-uuid"
LABEL_SERVICE_ID = "io.balena.service-id"
LABEL_SERVICE_NAME = "io.balena.service-name"
LABEL_IMAGE_ID = "io.balena.image-id"
LABEL_RELEASE_ID = "io.balena.release-id"
LABEL_RELEASE_UUID = "io.balena.release-uuid"
# Ours: a digest of the service config the container was created from (see ServiceSpec).
LABEL_CONFIG_HASH = "io.balena.device-agent.config-hash"
LABEL_IMAGE_REF = "io.balena.device-agent.image"
# every label above: what a supervisor stamps on a container for its own bookkeeping
SUPERVISOR_LABELS = frozenset(
    {
        LABEL_SUPERVISED,
        LABEL_APP_ID,
        LABEL_APP_UUID,
        LABEL_SERVICE_ID,
        LABEL_SERVICE_NAME,
        LABEL_IMAGE_ID,
        LABEL_RELEASE_ID,
        LABEL_RELEASE_UUID,
        LABEL_CONFIG_HASH,
        LABEL_IMAGE_REF,
    }
)


class ContainerStatus(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    RESTARTING = "restarting"
    PAUSED = "paused"
    EXITED = "exited"
    DEAD = "dead"
    REMOVING = "removing"


@dataclass(frozen=True)
class EngineConfig:
    """A container's inspect and its image's, as the engine returned them: read for containers
    without our config-hash label (another supervisor made them), to judge them by what they
    run (engine/adopt.py)."""

    container: Mapping[str, Any]
    image: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerState:
    id: str
    name: str
    app_id: int
    app_uuid: str
    service_name: str
    service_id: int
    image_id: int
    release_uuid: str
    release_id: int
    image: str  # the reference the container was created from (as in the target)
    image_docker_id: str  # sha256:... of the image it runs
    config_hash: str | None
    status: ContainerStatus
    health: str | None = None  # healthy | unhealthy | starting | None (no healthcheck)
    exit_code: int | None = None
    created_at: str = ""
    # only for a container without our config-hash label (a takeover): what it runs
    engine_config: EngineConfig | None = field(default=None, compare=False, repr=False)

    @property
    def running(self) -> bool:
        return self.status in (ContainerStatus.RUNNING, ContainerStatus.RESTARTING)

    @property
    def created_ts(self) -> float:
        """Creation time as unix seconds (0 when unknown)."""
        try:
            return float(self.created_at)
        except ValueError:
            return 0.0


@dataclass(frozen=True)
class ImageState:
    id: str  # sha256:...
    refs: frozenset[str]  # normalized repo tags and repo digests
    size: int = 0
    managed: bool = False  # pulled by this agent, so it may remove it once unused

    def matches(self, ref: str) -> bool:
        return normalize_image_ref(ref) in self.refs


@dataclass(frozen=True)
class VolumeState:
    name: str
    app_id: int
    app_uuid: str | None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NetworkState:
    name: str
    id: str
    app_id: int
    app_uuid: str | None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CurrentState:
    containers: tuple[ContainerState, ...] = ()
    images: tuple[ImageState, ...] = ()
    volumes: tuple[VolumeState, ...] = ()
    networks: tuple[NetworkState, ...] = ()

    def image_for(self, ref: str) -> ImageState | None:
        norm = normalize_image_ref(ref)
        return next((i for i in self.images if norm in i.refs), None)

    def has_image(self, ref: str) -> bool:
        return self.image_for(ref) is not None

    def app_containers(self, app_uuid: str) -> tuple[ContainerState, ...]:
        return tuple(c for c in self.containers if c.app_uuid == app_uuid)

    def app_uuids(self) -> frozenset[str]:
        return frozenset(c.app_uuid for c in self.containers) | frozenset(
            n.app_uuid for n in self.networks if n.app_uuid
        )


def rank_containers(
    containers: Iterable[ContainerState], want: str | None = None
) -> list[ContainerState]:
    """THE choice of a service's best container, best first: of the wanted config hash (when
    `want` is given), then running, then the newest, then the lowest id. The planner keeps the
    first and kills the rest; the API acts on and reports the first."""
    ranked = sorted(containers, key=lambda c: c.id)
    ranked.sort(key=lambda c: c.created_at, reverse=True)  # stable: ties stay by id
    ranked.sort(key=lambda c: (want is not None and c.config_hash != want, not c.running))
    return ranked


def best_by_service(containers: Iterable[ContainerState]) -> dict[str, ContainerState]:
    """Each service's best container (`rank_containers`), by service name."""
    grouped: dict[str, list[ContainerState]] = {}
    for c in containers:
        grouped.setdefault(c.service_name, []).append(c)
    return {name: rank_containers(group)[0] for name, group in grouped.items()}


def normalize_image_ref(ref: str) -> str:
    """`repo` → `repo:latest`; `repo:tag@sha256:x` → `repo@sha256:x`; docker.io prefixes dropped.

    Engines list pulled images under these forms (RepoTags / RepoDigests), so comparing
    normalized references tells whether a target's image is already on the device.
    """
    ref = ref.strip()
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
            break
    if "@" in ref:
        name, digest = ref.split("@", 1)
        return f"{_strip_tag(name)}@{digest}"
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"{ref}:latest"
    return ref


def _strip_tag(name: str) -> str:
    head, _, last = name.rpartition("/")
    if ":" in last:
        last = last.split(":", 1)[0]
    return f"{head}/{last}" if head else last


def split_image_ref(ref: str) -> tuple[str, str]:
    """Split a reference into (repository, tag-or-digest) for a pull."""
    norm = normalize_image_ref(ref)
    if "@" in norm:
        repo, digest = norm.split("@", 1)
        return repo, digest
    repo, _, tag = norm.rpartition(":")
    return repo, tag


def normalize_refs(refs: Iterable[str]) -> frozenset[str]:
    return frozenset(normalize_image_ref(r) for r in refs if r and r != "<none>:<none>")


def volume_engine_name(app_id: int, name: str) -> str:
    """Named volumes live on the engine as `{appId}_{name}`, as with the reference."""
    return f"{app_id}_{name}"


def network_engine_name(app_id: int, name: str) -> str:
    """App networks live on the engine as `{appId}_{name}`; `default` is implicit."""
    return f"{app_id}_{name}"


def app_network_name(app_id: int, app_uuid: str, name: str, existing: Collection[str]) -> str:
    """The engine name of an app's network `name`: ours (`{appId}_{name}`), unless only the one
    balena's supervisor names `{appUuid}_{name}` exists (a takeover): that one is used as is."""
    ours = network_engine_name(app_id, name)
    theirs = f"{app_uuid}_{name}"
    return theirs if ours not in existing and theirs in existing else ours


def network_app_uuid(name: str, labels: Mapping[str, str]) -> str | None:
    """The app uuid of a network: its label, or (balena's supervisor labels only the app id)
    the `{appUuid}_` its name starts with."""
    if labels.get(LABEL_APP_UUID):
        return labels[LABEL_APP_UUID]
    prefix, sep, _ = name.partition("_")
    if sep and len(prefix) >= 32 and all(ch in "0123456789abcdefABCDEF" for ch in prefix):
        return prefix
    return None


def volume_app_id(name: str, labels: Mapping[str, str]) -> int:
    """The app id of a volume: its label, or (balena's supervisor labels volumes with the app
    uuid only) the `{appId}_` its name starts with, as the reference reads it; 0 if neither."""
    for text in (labels.get(LABEL_APP_ID, ""), name.partition("_")[0] if "_" in name else ""):
        if text.isascii() and text.isdigit():
            return int(text)
    return 0


def container_name(service: str, image_id: int, release_id: int, release_uuid: str) -> str:
    """`{service}_{imageId}_{releaseId}_{commit}`: the reference's naming, so release metadata
    can be carried to a new release by a rename (labels can't change on a container)."""
    return f"{service}_{image_id}_{release_id}_{release_uuid}"
