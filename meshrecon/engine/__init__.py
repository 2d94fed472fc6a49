"""meshrecon.engine"""
