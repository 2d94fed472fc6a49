"""meshrecon.utils: distributed helpers, events and writers, logging, environment."""
