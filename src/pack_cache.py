"""Pack a source's images (every sample and site, resized, every channel) into a memmap cache.

    python src/pack_cache.py --root /data --cache_dir /cache --image_size 512 [--source rxrx1]
        [--source_params '{...}'] [--force]

Then train and predict with ``--data_params/cache=/cache`` (same source, root and image size).
A cache that is up to date is left alone; one whose images or size changed is packed again.
See cellpipe.data.cache for the layout.
"""
from cellpipe.core import cli
from cellpipe.data.cache import pack
from cellpipe.sources import make_source


def main(root: str, cache_dir: str, image_size: int, source: str = "rxrx1", source_params=None,
         force: bool = False) -> str:
    """Pack (or refresh) the cache of ``source`` at ``root`` for ``image_size``; prints its folder."""
    src = make_source({"source": source, "root": root, "source_params": cli.mapping(source_params, "source_params") or {}})
    return str(pack(src, cache_dir, image_size, force=force))


if __name__ == "__main__":
    cli.run(main)
