"""devcloud: a small balena-compatible cloud for tests and demos (not part of the agent wheel).

Run it from the repo root: ``python -m devcloud --port 0 --port-file /tmp/devcloud.port``.

Device API (as balena's):
  GET   /device/v3/{uuid}/state      Authorization: Bearer <key>; ETag, If-None-Match -> 304
  PATCH /device/v3/state             Authorization: Bearer <key>; {uuid: {...}} -> 200 "OK"
  PATCH /device/v3/tags              Authorization: Bearer <key>; {uuid: {tagKey: value}} -> 200
        "OK"; answers 500 / 503 (Retry-After) while the device has a "500" / "503_retry_after"
        fault (not counted); device tags also as OData (/v6/device_tag), see devcloud.tags
  GET   /ping                        200 "OK"
  POST  /device/register             Bearer <fleet provisioning key> -> 201 {id, uuid, api_key}
        (with the key exchange: GET /v7/device, POST /api-key/device/{id}/device-key), see
        devcloud.provisioning

Admin API (JSON in/out, no auth):
  POST /admin/devices                        {uuid, api_key, name?, vpn?} -> 201 {uuid}
        vpn: {kind: "wireguard", public_key, keepalive_s?(25)} | {kind: "openvpn", common_name}
  GET  /admin/devices                        -> [summary + connectivity, ...]
  GET  /admin/devices/{uuid}[?since=T]       -> {uuid, name, target, raw_target, etag, polls,
        reports, current, apps_update_status, update_status_history, last_poll, fault, vpn,
        trickle, connectivity, status_history}
        (?since=T keeps only polls/reports/history with t > T)
        connectivity: {status, legacy_status, heartbeat: {ok, last, interval_ms},
        cloudlink: {ok, enabled, kind, last_handshake}, reason, since, update_status,
        update_status_since} (times ISO 8601), see devcloud.connectivity
  PUT  /admin/devices/{uuid}/target          {name, config, apps} -> {etag}
  PUT  /admin/devices/{uuid}/target?raw=1    any bytes, served verbatim -> {etag}
  POST /admin/devices/{uuid}/faults          {mode|null, count|null, retry_after|null}
  GET|PUT /admin/devices/{uuid}/tags         -> {tagKey: value}; ?requests=1: the tags of every
        PATCH /device/v3/tags for it, in order
  POST /admin/devices/{uuid}/clear-records   drops polls, reports, update status history
  PUT  /admin/devices/{uuid}/trickle         {chunk_bytes, pause_ms?} | null -> {uuid, trickle}
        send this device's answer bodies (state, tags) in pieces of chunk_bytes, pausing
        pause_ms after each (chunked encoding); null: as the cloud-wide setting says
  POST /admin/applications                  {id, provisioning_key, name?} -> 201 {id, name}
  GET  /admin/applications                  -> [{id, name, devices, registrations}]
  PUT  /admin/applications/{id}/target       {name, config, apps}: what registering devices get
  PUT  /admin/trickle                        {chunk_bytes, pause_ms?} | null: cloud-wide
        (also --trickle CHUNK_BYTES:PAUSE_MS at start)

Device logs: POST /device/v2/{uuid}/log-stream (gzip NDJSON), see devcloud.logs.

Pages: GET / and /devices — the Devices page (HTML, refreshes every 2 s).
Options for the cloud side of cloudlink: --wg-interface, --openvpn-status, --poll-interval-ms.
"""

from devcloud.state import Cloud, Device

__all__ = ["Cloud", "Device"]
