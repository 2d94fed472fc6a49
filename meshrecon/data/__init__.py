"""meshrecon.data"""
