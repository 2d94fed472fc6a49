"""meshrecon.utils"""
