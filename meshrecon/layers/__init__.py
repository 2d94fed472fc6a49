"""meshrecon.layers"""
