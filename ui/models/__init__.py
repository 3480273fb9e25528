"""Item models: thin Qt adapters (``QAbstractItemModel`` with ``IntEnum`` roles) over core data.

Each model holds plain row dataclasses built from core objects by ``ui.models.rows``; views
only render what the models expose. Every model is checked with ``qtmodeltester``.
"""
