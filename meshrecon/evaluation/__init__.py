"""meshrecon.evaluation"""
