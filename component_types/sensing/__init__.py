"""The sensing component type (城市泛在感知接入): device fleets over MQTT; see README.md in this folder."""
