"""What the device is doing: each app's update status and the heartbeat (`board`), and the
device status the dashboard shows, derived from the two links (`device`)."""
