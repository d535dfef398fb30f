"""Bytes <-> numpy for every wire format, with no model rules: `/predict` JSON and msgpack
(`codecs`, `rows`, `tensors`), V2 documents and tensors (`v2`, `v2_tensors`, `datatypes`), and
the bounds on what a body may make the decoder build (`bounds`)."""
