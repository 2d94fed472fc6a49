"""meshrecon.render"""
