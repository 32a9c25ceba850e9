"""device-agent: keeps a fleet device running the release its cloud asks for."""

__version__ = "0.1.0"

# The release of balena's supervisor (balena-os/balena-supervisor) whose API and behaviour the
# agent matches. It is what a peer that knows balena's supervisor reads: `/v2/version`,
# `supervisor_version` in `/v1/device` and the state report, containers'
# BALENA_SUPERVISOR_VERSION and service contracts' `sw.supervisor`. The balena CLI refuses
# local mode below 7.21.4 and livepush below 9.7.0. The agent's own version (`__version__`)
# shows in `/v2/agent/status`, the User-Agent and `device-agent --version`.
SUPERVISOR_COMPAT_VERSION = "19.0.5"
