"""meshrecon.checkpoint"""
