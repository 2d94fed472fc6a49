"""meshrecon.config"""
