"""meshrecon.modeling"""
