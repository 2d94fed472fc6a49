"""meshrecon.model_zoo"""
