"""The composition root: builds every component and wires them together, runs the long-lived
tasks, drains them on shutdown. No decisions are made here: each lives in the component that
owns it (target intake: agent/local/targets.py; config vars: agent/local/fleetvars.py; the
update trigger: agent/reconcile/trigger.py; health: agent/healthcheck.py), and the local API
sees only its ports (agent/api/ports.py). Stopping the agent never stops the apps: their
containers keep running."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import structlog

from agent import SUPERVISOR_COMPAT_VERSION, __version__, sdnotify
from agent.api.keys import ApiKeys
from agent.api.ports import ApiContext, ApiSettings
from agent.api.server import ApiServer
from agent.cloud.client import CloudClient
from agent.cloud.poller import Poller
from agent.cloud.provision import Registrar, ensure_identity
from agent.cloud.reporter import Reporter, ReportSources
from agent.cloud.tags import DeviceTags
from agent.cloudlogs.channel import CloudLogs, LogSettings
from agent.config import DeviceConfig
from agent.connectivity.monitor import ConnectivityMonitor, vpn_config
from agent.device.cached import Cached
from agent.device.info import CpuSampler, device_arch, device_fields, metrics
from agent.engine.compose import DeviceContext
from agent.engine.docker import DockerEngine
from agent.engine.features import read_host_facts
from agent.engine.registry import RegistryCredentials
from agent.engine.supnet import SupervisorNetwork, supervisor_network_config
from agent.events.bus import Bus
from agent.events.kinds import DeviceFieldsChanged, FleetConfigChanged, PollDone
from agent.healthcheck import HealthCheck
from agent.host import make_host
from agent.local.fleetvars import FleetVars
from agent.local.intake import TargetIntake
from agent.local.preload import adopt_images, load_preloaded
from agent.local.targets import TargetService
from agent.model.contracts import DeviceContract, kernel_facts
from agent.model.source import TargetSource
from agent.reconcile.executor import Executor, ManagedImages
from agent.reconcile.loop import Reconciler
from agent.reconcile.rollback import Rollback
from agent.reconcile.trigger import UpdateTrigger
from agent.reconcile.window_gate import WindowGate
from agent.status.board import StatusBoard
from agent.store import Store
from agent.supervise import Supervisor
from agent.waits import wait_for

log = structlog.get_logger("agent.daemon")

METRICS_CACHE_S = 30.0
DEVICE_FIELDS_CACHE_S = 60.0
SHUTDOWN_GRACE_S = 5.0


class Agent:
    def __init__(self, config: DeviceConfig) -> None:
        config = ensure_identity(config)  # provisioning: a missing uuid/deviceApiKey generated
        self.config = config
        self.store = Store(config.data_dir)
        self.bus = Bus()  # what components tell each other (agent/events/)
        self.status = StatusBoard(self.store, self.bus)
        self.fleet = FleetVars(config.poll_interval_ms, self.status, config.local_mode, self.bus)
        self.engine = DockerEngine(config.docker_host, credentials=RegistryCredentials.of(config))
        # the bridge supervisor-api services reach the local API through (engine/supnet.py)
        self.supervisor_network = SupervisorNetwork(
            self.engine, supervisor_network_config(config.extra)
        )
        self.engine.reserved_networks.add(self.supervisor_network.config.name)
        self.images = ManagedImages(self.store)
        self.keys = ApiKeys(self.store)
        device = self._device_context(config)
        self.window_gate = WindowGate(
            lambda: (self.fleet.current.update_window, self.fleet.current.update_window_tz),
            config.clock_sync,
        )
        executor = Executor(self.engine, device, self.images, bus=self.bus)
        executor.supervisor_network = self.supervisor_network
        self.reconciler = Reconciler(
            engine=self.engine,
            executor=executor,
            status=self.status,
            images=self.images,
            lock_dir=config.lock_dir,
            override_lock=lambda: self.fleet.current.override_lock,
            max_pull_attempts=config.max_pull_attempts,
            window=self.window_gate.verdict,
            bus=self.bus,
        )
        self.intake = TargetIntake(self.store, self.reconciler.set_target)
        # probation and automatic rollback of a failing release (issue 14)
        self.rollback = Rollback(
            self.store,
            self.engine,
            self.status,
            self.reconciler,
            config.uuid,
            retarget=lambda: self.targets.accept(self.rollback.last_body, TargetSource.ROLLBACK),
            active=lambda: not self.fleet.local_mode,
            bus=self.bus,
        )
        self.targets = TargetService(
            config.uuid,
            _contract(config, device),
            self.store,
            self.intake,
            self.fleet,
            self.status,
            adjust=self.rollback.adjust,
            new_apps=self.keys.ensure_apps,
            bus=self.bus,
        )
        self.client = CloudClient(
            config.api_endpoint, config.uuid, config.device_api_key, config.api_timeout_s
        )
        poll_interval_s = lambda: self.fleet.poll_interval_s  # noqa: E731
        self.poller = Poller(
            self.client, self.store, self.status, self.targets.accept, poll_interval_s, bus=self.bus
        )
        self.bus.subscribe(PollDone, lambda _: self.keys.flush())  # what a full disk kept back
        # device tags set through the local API, sent to the cloud (agent/cloud/tags.py)
        self.tags = DeviceTags(self.client, self.store, poll_interval_s)
        # a successful poll says the cloud is back for the tags' sender
        self.bus.subscribe(PollDone, lambda done: self.tags.poll_succeeded() if done.ok else None)
        self.updates = UpdateTrigger(
            self.reconciler,
            self.rollback,
            self.poller.trigger,
            lambda: self.fleet.current.instant_update_trigger,
        )
        cpu = CpuSampler()
        self._metrics = Cached(METRICS_CACHE_S, lambda: metrics(cpu, config.data_dir))
        self._fields = Cached(DEVICE_FIELDS_CACHE_S, lambda: device_fields(config.listen_port))
        self.reporter = Reporter(
            self.client,
            self.store,
            self.status,
            ReportSources(
                device_fields=self._device_fields,
                metrics=self._metrics,
                report_apps=lambda: not self.fleet.local_mode,
            ),
            bus=self.bus,
        )
        # registers the device (config.json `apiKey`) before the first poll and report
        self.registrar = Registrar(config, self._fields, lambda c: setattr(self, "config", c))
        self.connectivity = ConnectivityMonitor(
            vpn_config(config.extra.get("vpn")),
            self.status,
            config.api_endpoint,
            poll_interval_s=poll_interval_s,
            connectivity_check=lambda: self.fleet.current.connectivity_check,
            bus=self.bus,
        )
        # device logs to the cloud (issue 13): off in local mode, as the reference's local backend
        self.cloud_logs = CloudLogs(
            self.engine,
            LogSettings.of(config.extra),
            lambda: (self.config.api_endpoint, self.config.uuid, self.config.device_api_key),
            config.data_dir,
            enabled=lambda: self.fleet.current.log_control and not self.fleet.local_mode,
            bus=self.bus,
        )
        # SUPERVISOR_LOG_CONTROL may have changed
        self.bus.subscribe(FleetConfigChanged, lambda _: self.cloud_logs.poke())
        # every long-lived task, restarted if it ever ends (agent/supervise.py)
        self.supervisor = Supervisor()
        health = HealthCheck(
            self.supervisor,
            self.poller,
            self.reconciler,
            self.status,
            poll_interval_s,
            config.api_timeout_s,
        )
        self.api = ApiServer(self._api_context(config, device, health), self.bus)

    def _device_context(self, config: DeviceConfig) -> DeviceContext:
        """What containers are created with: the device's facts, the API's address and keys."""
        return DeviceContext(
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

    def _device_fields(self) -> dict[str, object]:
        """The device's fields for reports and `GET /v1/device`, with the API key in force."""
        return {**self._fields(), "api_secret": self.keys.global_key}

    def _api_context(
        self, config: DeviceConfig, device: DeviceContext, health: HealthCheck
    ) -> ApiContext:
        settings = ApiSettings(
            device_uuid=config.uuid,
            device_type=config.device_type,
            device_arch=device.device_arch,
            lock_dir=config.lock_dir,
            data_dir=config.data_dir,
            host_boot_dir=config.host_boot_dir,
            strict_api_keys=config.strict_api_keys,
            listen_port=config.listen_port,
            listen_address=config.listen_address,
        )
        return ApiContext(
            settings=settings,
            status=self.status,
            apply=self.reconciler,
            targets=self.targets,
            updates=self.updates,
            engine=self.engine,
            managed_images=lambda: frozenset(self.images.ids),
            tags=self.tags,
            connectivity=self.connectivity,
            poller=self.poller,
            reporter=self.reporter,
            keys=self.keys,
            host=make_host(config.data_dir),
            healthy=health,
            device_fields=self._device_fields,
            key_rotated=lambda: self.bus.publish(DeviceFieldsChanged()),  # report `api_secret`
            override_lock=lambda: self.fleet.current.override_lock,
            bus=self.bus,
        )

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
        self.targets.restore(saved.body if saved is not None else None)
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
        spawn(
            "sdnotify",
            lambda: sdnotify.notify_task(
                self.status,
                self.reconciler,
                self.poller,
                lambda: self.supervisor.healthy,
                had_target,
                self.bus,
            ),
        )
        await stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        log.info("agent_stopping")
        await self.api.stop()
        await self.supervisor.drain(SHUTDOWN_GRACE_S)
        with contextlib.suppress(TimeoutError):  # the latest status and images on disk
            await wait_for(
                asyncio.gather(
                    self.status.flush(),
                    self.images.flush(),
                    self.rollback.flush(),
                    self.keys.drain(),  # a key regenerated just before the stop
                    self.intake.flush(),  # a local target posted just before the stop
                ),
                SHUTDOWN_GRACE_S,
            )
        await self.reporter.flush(timeout=2.0)
        await self.client.close()
        self.engine.close()
        log.info("agent_stopped")


def _contract(config: DeviceConfig, device: DeviceContext) -> DeviceContract:
    """What service contracts may require of this device."""
    uname = os.uname()
    return DeviceContract(
        supervisor_version=SUPERVISOR_COMPAT_VERSION,
        device_type=config.device_type,
        device_arch=device.device_arch,
        os_slug=device.host.os_slug or None,
        os_version=device.host.os_semver or None,
        **kernel_facts(uname.release, uname.sysname),
    )
