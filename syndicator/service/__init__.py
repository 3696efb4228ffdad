"""The daemon: scheduler jobs, signals, sd_notify and the order of start-up and shutdown.

Takes a configuration and a clock; runs cycles and deliveries until told to stop.
"""
