"""Pictures of what a model does: flow colour coding, attention maps over images and text, reconstruction strips,
training curves. Arrays in, PNG files out (Pillow; matplotlib, the ``plot`` extra, where axes and legends are
drawn). Used by the prediction writers and by ``perceiverio predict``/``attention``/``plot``."""
