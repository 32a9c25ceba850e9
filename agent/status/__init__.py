"""What the device is doing: each app's update status, its services and the heartbeat, on the
status board (`board`), the one source of truth the reporter, the API, metrics and sd_notify
read."""
