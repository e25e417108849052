"""Recipe argument objects for tests: a class's defaults with some fields set (``init=False`` ones too)."""


def with_fields(args_cls, **values):
    """``args_cls()`` with ``values`` set as attributes (no ``__post_init__`` check of them)."""
    args = args_cls()
    for key, value in values.items():
        setattr(args, key, value)
    return args
