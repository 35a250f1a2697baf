"""Where events go: JSON lines, webhook, MQTT, snapshots and clips, each on its own thread."""
