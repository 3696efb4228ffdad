"""Classify articles into WCO regions and topics, and explain why.

Takes raw title and body text; gives a ``Classification`` with the evidence for every decision.
"""
