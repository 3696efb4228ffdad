"""The commands of ``syndicator``, one module each.

``syndicator.cli`` names them as ``"module:function"`` and imports a command's module only
when that command runs, so the command line answers at once and each command loads only
what it uses.
"""
