"""The composition root: builds every component, runs the long-lived tasks, drains them on
shutdown. Stopping the agent never stops the apps: their containers keep running."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from agent import SUPERVISOR_COMPAT_VERSION, __version__, sdnotify
from agent.api.keys import ApiKeys
from agent.api.server import ApiServer
from agent.cloud.client import CloudClient
from agent.cloud.poller import Poller
from agent.cloud.provision import Registrar, ensure_identity
from agent.cloud.reporter import Reporter, ReportSources
from agent.cloud.tags import DeviceTags
from agent.cloudlogs.channel import CloudLogs, LogSettings
from agent.config import DeviceConfig, FleetConfig, apply_config_vars
from agent.connectivity.monitor import ConnectivityMonitor, vpn_config
from agent.device.info import CpuSampler, device_arch, device_fields, metrics
from agent.engine.compose import DeviceContext
from agent.engine.docker import DockerEngine
from agent.engine.features import read_host_facts
from agent.engine.registry import RegistryCredentials
from agent.engine.supnet import SupervisorNetwork, supervisor_network_config
from agent.errors import TargetStateError
from agent.healthcheck import agent_health
from agent.host import make_host
from agent.local.intake import TargetIntake
from agent.local.preload import adopt_images, load_preloaded
from agent.model import parse_target
from agent.model.contracts import DeviceContract, apply_contracts, kernel_facts
from agent.model.source import TargetSource
from agent.reconcile.executor import Executor, ManagedImages
from agent.reconcile.loop import Reconciler
from agent.reconcile.rollback import Rollback
from agent.reconcile.window_gate import WindowGate
from agent.status.board import StatusBoard
from agent.store import Store
from agent.supervise import Supervisor

log = structlog.get_logger("agent.daemon")

METRICS_CACHE_S = 30.0
DEVICE_FIELDS_CACHE_S = 60.0
SHUTDOWN_GRACE_S = 5.0


class _Cached:
    """Reads of /proc, /sys and the data dir's file system for reports, at most once per
    `ttl_s` (the reporter builds a report on every status change, download progress included)
    and never on the event loop: there a stale value is served while a worker thread reads the
    new one (`prime` reads the first at start). Called from a worker thread, it reads in place.
    """

    def __init__(self, ttl_s: float, read: Callable[[], dict[str, Any]]) -> None:
        self._ttl_s = ttl_s
        self._read = read
        self._at = float("-inf")
        self._value: dict[str, Any] = {}
        self._refreshing: asyncio.Task[None] | None = None

    def __call__(self) -> dict[str, Any]:
        if time.monotonic() - self._at > self._ttl_s:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # a worker thread
                self._at, self._value = time.monotonic(), self._read()
                return dict(self._value)
            if self._refreshing is None or self._refreshing.done():
                self._refreshing = loop.create_task(self.prime())
        return dict(self._value)

    async def prime(self) -> None:
        try:
            value = await asyncio.to_thread(self._read)
        except Exception as exc:  # keep the old value; try again after ttl_s
            log.warning("device_info_unreadable", error=repr(exc))
            value = self._value
        self._at, self._value = time.monotonic(), value


def _cached(ttl_s: float, read: Callable[[], dict[str, Any]]) -> _Cached:
    return _Cached(ttl_s, read)


class Agent:
    def __init__(self, config: DeviceConfig) -> None:
        config = ensure_identity(config)  # provisioning: a missing uuid/deviceApiKey generated
        self.config = config
        self.store = Store(config.data_dir)
        self.status = StatusBoard(self.store)
        self.fleet = FleetConfig(poll_interval_ms=config.poll_interval_ms)
        self.engine = DockerEngine(config.docker_host, credentials=RegistryCredentials.of(config))
        # the bridge supervisor-api services reach the local API through (engine/supnet.py)
        self.supervisor_network = SupervisorNetwork(
            self.engine, supervisor_network_config(config.extra)
        )
        self.engine.reserved_networks.add(self.supervisor_network.config.name)
        self.images = ManagedImages(self.store)
        self.keys = ApiKeys(self.store)
        device = DeviceContext(
            uuid=config.uuid,
            device_type=config.device_type,
            lock_dir=config.lock_dir,
            supervisor_version=SUPERVISOR_COMPAT_VERSION,
            api_port=config.listen_port,
            api_host=config.supervisor_api_host or self.supervisor_network.config.gateway,
            loopback_api_host=config.local_api_host,
            supervisor_network=self.supervisor_network.config.name,
            app_api_keys=self.keys.app_keys,
            device_arch=device_arch(config.extra.get("deviceArch")),
            device_name=lambda: self.reconciler.target.name if self.reconciler.target else "",
            api_endpoint=config.api_endpoint,
            device_api_key=config.device_api_key,
            # config.json `hostRoot`: where the agent sees the host's root (the reference's
            # ROOT_MOUNTPOINT), for the feature labels' host paths and os-release
            host=read_host_facts(
                Path(str(config.extra.get("hostRoot") or "/")), config.docker_host
            ),
        )
        uname = os.uname()
        self.contract = DeviceContract(  # what service contracts may require of this device
            supervisor_version=SUPERVISOR_COMPAT_VERSION,
            device_type=config.device_type,
            device_arch=device.device_arch,
            os_slug=device.host.os_slug or None,
            os_version=device.host.os_semver or None,
            **kernel_facts(uname.release, uname.sysname),
        )
        self.window_gate = WindowGate(
            lambda: (self.fleet.update_window, self.fleet.update_window_tz), config.clock_sync
        )
        self.reconciler = Reconciler(
            engine=self.engine,
            executor=self._executor(device),
            status=self.status,
            images=self.images,
            lock_dir=config.lock_dir,
            override_lock=lambda: self.fleet.override_lock,
            max_pull_attempts=config.max_pull_attempts,
            window=self.window_gate.verdict,
        )
        self.intake = TargetIntake(self.store, self.reconciler.set_target)
        # probation and automatic rollback of a failing release (issue 14)
        self.rollback = Rollback(
            self.store,
            self.engine,
            self.status,
            self.reconciler,
            config.uuid,
            retarget=lambda: self.accept_target(self.rollback.last_body, TargetSource.ROLLBACK),
            active=lambda: not self.local_mode,
        )
        self.client = CloudClient(
            config.api_endpoint, config.uuid, config.device_api_key, config.api_timeout_s
        )
        self.poller = Poller(
            self.client,
            self.store,
            self.status,
            accept=self.accept_target,
            interval_s=lambda: self.fleet.poll_interval_ms / 1000.0,
        )
        self.poller.after_poll.append(self.keys.flush)  # keys a full disk kept from the store
        # device tags set through the local API, sent to the cloud (agent/cloud/tags.py)
        self.tags = DeviceTags(
            self.client, self.store, lambda: self.fleet.poll_interval_ms / 1000.0
        )
        self.poller.after_poll.append(self._poll_done)
        cpu = CpuSampler()
        self._metrics = _cached(METRICS_CACHE_S, lambda: metrics(cpu, config.data_dir))
        self.reporter = Reporter(
            self.client,
            self.store,
            self.status,
            ReportSources(
                device_fields=self.device_fields,
                metrics=self._metrics,
                report_apps=lambda: not self.local_mode,
            ),
        )
        self._fields = _cached(DEVICE_FIELDS_CACHE_S, lambda: device_fields(config.listen_port))
        # registers the device (config.json `apiKey`) before the first poll and report
        self.registrar = Registrar(config, self._fields, lambda c: setattr(self, "config", c))
        self.host = make_host(config.data_dir)
        self.connectivity = ConnectivityMonitor(
            vpn_config(config.extra.get("vpn")),
            self.status,
            config.api_endpoint,
            poll_interval_s=lambda: self.fleet.poll_interval_ms / 1000.0,
            connectivity_check=lambda: self.fleet.connectivity_check,
        )
        self.status.listeners.append(self.connectivity.poke)
        # device logs to the cloud (issue 13): off in local mode, as the reference's local backend
        self.cloud_logs = CloudLogs(
            self.engine,
            LogSettings.of(config.extra),
            lambda: (self.config.api_endpoint, self.config.uuid, self.config.device_api_key),
            config.data_dir,
            enabled=lambda: self.fleet.log_control and not self.local_mode,
        )
        self.api = ApiServer(self)
        # every long-lived task, restarted if it ever ends (agent/supervise.py)
        self.supervisor = Supervisor()

    def _executor(self, device: DeviceContext) -> Executor:
        executor = Executor(self.engine, device, self.images)
        executor.supervisor_network = self.supervisor_network
        return executor

    # --- target intake ------------------------------------------------------------------------

    def accept_target(self, body: Any, source: TargetSource) -> bool:
        """Validate a target document and hand it to the apply loop. A malformed document is
        refused whole (the running apps are untouched); a malformed app is rejected alone."""
        if source != TargetSource.LOCAL:  # a failed release's app back on its previous release
            body = self.rollback.adjust(body)
        try:
            target = parse_target(body, self.config.uuid)
        except TargetStateError as exc:
            self.status.target_error = str(exc)
            log.error("target_invalid", source=source, error=str(exc))
            return False
        self.status.target_error = None
        checked = apply_contracts(target, body, self.contract)  # unmet: rejected / not run
        target = checked.target
        for app_name, services in checked.not_run.items():
            log.warning("contract_services_not_run", app=app_name, services=list(services))
        for app in target.apps.values():
            if app.rejection:
                log.error(
                    "app_rejected",
                    app=app.name,
                    app_uuid=app.uuid,
                    release=app.release_uuid,
                    reason=app.rejection,
                )
            elif app.release is not None:
                for svc in app.release.services.values():
                    if svc.composition.ignored_keys:
                        log.warning(
                            "compose_keys_ignored",
                            app=app.name,
                            service=svc.name,
                            keys=list(svc.composition.ignored_keys),
                        )
        local = source == TargetSource.LOCAL
        self.apply_config_vars(self.intake.local_config_vars(target) if local else target.config)
        log.info(
            "target_accepted", source=source, apps=sorted(a.name for a in target.apps.values())
        )
        self.keys.ensure_apps({app.id for app in target.apps.values()})
        self.intake.accept(target, source, self.local_mode, body if local else None)
        return True

    def apply_config_vars(self, config_vars: Any) -> None:
        new, errors = apply_config_vars(self.fleet, config_vars, self.config.poll_interval_ms)
        for error in errors:
            log.error("config_var_invalid", error=error)
        self.status.config_errors = errors
        if new != self.fleet:
            log.info(
                "config_changed",
                **{k: v for k, v in vars(new).items() if getattr(self.fleet, k) != v},
            )
            self.fleet = new
            self.cloud_logs.poke()  # SUPERVISOR_LOG_CONTROL may have changed

    def request_update(self, force: bool = False, cancel: bool = False) -> bool:
        """The instant-update trigger: poll the cloud now and re-run the apply loop; with
        `cancel`, the apply in flight is abandoned first (its pulls stop), as the reference
        does. Returns False (ignored, nothing cancelled) when instant updates are off and the
        request is not forced."""
        if not force and not self.fleet.instant_update_trigger:
            return False
        log.info("update_requested", force=force, cancel=cancel)
        if force:
            self.rollback.force()  # a rolled back release may be applied again
        if cancel:
            self.reconciler.cancel_apply()
        self.poller.trigger()
        self.reconciler.request_apply(force)
        return True

    def _poll_done(self) -> None:
        """After each poll: a successful one says the cloud is back for the tags' sender."""
        if self.status.last_poll_error is None:
            self.tags.poll_succeeded()

    # --- local API: local mode, keys, health (issue 4) ---------------------------------------

    @property
    def local_mode(self) -> bool:
        return self.config.local_mode or self.fleet.local_mode

    def accept_local_target(self, document: dict[str, Any]) -> str | None:
        """A v3 document posted in local mode: applied whole, or refused with the reason (no
        app of it is applied when one is invalid)."""
        try:
            target = parse_target(document, self.config.uuid)
        except TargetStateError as exc:
            return str(exc)
        rejected = [a.rejection for a in target.apps.values() if a.rejection]
        if rejected:
            return "; ".join(r for r in rejected if r)
        return (
            None if self.accept_target(document, TargetSource.LOCAL) else self.status.target_error
        )

    def target_document(self) -> dict[str, Any] | None:
        """The target in force as the device's entry of a v3 document {name, config, apps}."""
        saved = self.intake.saved_local() if self.local_mode else None
        if saved is None:
            saved = (self.store.get("target") or {}).get("body")
        entry = saved.get(self.config.uuid) if isinstance(saved, dict) else None
        return entry if isinstance(entry, dict) else None

    def device_fields(self) -> dict[str, Any]:
        return {**self._fields(), "api_secret": self.keys.global_key}

    def api_key_changed(self) -> None:
        """The global key was rotated: report the new `api_secret` now."""
        self.status.changed.set()

    def healthy(self) -> tuple[bool, str]:
        """For GET /v1/healthy: the long-lived tasks run (none given up) and neither loop is
        stuck."""
        if self.supervisor.given_up:
            why = "; ".join(f"{n} {r}" for n, r in sorted(self.supervisor.given_up.items()))
            return False, f"task given up: {why}"
        missing = {"reconcile", "poll", "report"} - self.supervisor.names()
        if missing:
            return False, f"not running: {', '.join(sorted(missing))}"
        return agent_health(self)

    # --- life cycle ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        if os.environ.get("DEVICE_AGENT_SLOW_CALLBACK_MS"):  # test only: agent/loopmonitor.py
            from agent import loopmonitor

            loopmonitor.install_from_env(asyncio.get_running_loop())
        log.info(
            "agent_starting",
            version=__version__,
            supervisor_compat=SUPERVISOR_COMPAT_VERSION,
            uuid=self.config.uuid,
            api=self.config.api_endpoint,
            engine=self.config.docker_host,
            data_dir=str(self.config.data_dir),
        )
        # a preloaded apps.json becomes the persisted target when there is none yet
        preloaded = await asyncio.to_thread(
            load_preloaded, self.config.apps_json_path, self.config.uuid, self.store
        )
        if preloaded is not None:
            await adopt_images(self.engine, self.images, preloaded.images)
        saved = self.poller.load_saved()
        if saved is not None:
            self.accept_target(saved.body, TargetSource.PERSISTED)
        saved_local = self.intake.saved_local()
        if saved_local is not None and self.local_mode:
            self.accept_target(saved_local, TargetSource.LOCAL)
        # read before the first poll can bring a target: READY's rule depends on what was persisted
        had_target = self.reconciler.target is not None
        await asyncio.gather(self._metrics.prime(), self._fields.prime())  # off the loop
        # the supervisor network, beside the start (again before a container needs it)
        self._ensure_network = asyncio.create_task(self.supervisor_network.ensure())
        spawn = self.supervisor.spawn
        spawn("reconcile", self.reconciler.run)
        spawn("engine-events", self.reconciler.watch_engine)
        spawn("probation", self.rollback.run)
        spawn("poll", self.registrar.then(self.poller.run))
        spawn("report", self.registrar.then(self.reporter.run))
        spawn("cloud-logs", self.registrar.then(self.cloud_logs.run))
        spawn("tags", self.registrar.then(self.tags.run))
        try:
            await self.api.start()
        except OSError as exc:
            log.error("api_start_failed", port=self.config.listen_port, error=str(exc))
        spawn("connectivity", self.connectivity.run)
        # READY / WATCHDOG / STATUS (issue 6); the pings stop once a task is given up
        spawn("sdnotify", lambda: sdnotify.for_agent(self, had_target))
        await stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        log.info("agent_stopping")
        await self.api.stop()
        await self.supervisor.drain(SHUTDOWN_GRACE_S)
        with contextlib.suppress(TimeoutError):  # the latest status and images on disk
            await asyncio.wait_for(
                asyncio.gather(self.status.flush(), self.images.flush(), self.rollback.flush()),
                SHUTDOWN_GRACE_S,
            )
        await self.reporter.flush(timeout=2.0)
        await self.client.close()
        self.engine.close()
        log.info("agent_stopped")
