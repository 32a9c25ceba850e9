"""The host's configuration as the local API's `/v1/device/host-config` shows and changes it:
the hostname (systemd-hostnamed over D-Bus) and the redsocks proxy settings (files under the
boot partition's `system-proxy/`, as balenaOS reads them)."""
